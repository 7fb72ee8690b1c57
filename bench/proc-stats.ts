// CPU time of processes and of the machine, from /proc, so that a benchmark can say
// where the cores went (the coordinator, PostgreSQL, the load generator, others).
import { readdirSync, readFileSync } from 'node:fs';

/** The fields after the command name in /proc/<pid>/stat (field 3 onwards). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

const TICKS = 100; // USER_HZ

/** User + system CPU time of a process, all its threads, from /proc/<pid>/stat. */
export function readCpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime
}

/**
 * CPU time of a process and all its children, living and exited (PostgreSQL's
 * backends are children of the postmaster that come and go with connections).
 */
export function readTreeCpuSeconds(pid: number): number {
  const own = statFields(pid);
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]); // + cutime, cstime
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = statFields(Number(entry));
      if (Number(fields[1]) === pid) ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / TICKS;
}

/** The machine's busy and total CPU time so far, summed over its cores (/proc/stat). */
export function readMachineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal
  const idle = values[3]! + values[4]!; // idle, iowait
  return { busy: (total - idle) / TICKS, total: total / TICKS };
}
