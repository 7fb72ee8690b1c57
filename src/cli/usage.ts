// The usage text of `kiln`, whole (`kiln --help`) and by command (`kiln build submit --help`).

export const USAGE = `usage: kiln <command> [options]

  kiln coordinator [--listen HOST:PORT] [--database URL | --data-dir DIR] [--nar-dir DIR]
                   [--config FILE] [--tls-cert FILE --tls-key FILE]
                   [--allocation priority-first|fair-share:KEY] [--lease SECONDS]
                   [--retries N] [--retry-on KIND,...] [--retry-backoff SECONDS]
                   [--retry-tag KEY=VALUE:RETRIES[:KIND,...[:BACKOFF]]]...
                   [--timeout SECONDS] [--max-silent-time SECONDS]
                   [--max-load-per-cpu X] [--min-free-disk-gib X] [--only-submitted]
                   [--min-free-nar-gib X] [--max-output-size SIZE] [--max-log-size SIZE]
                   [--nar-store DIR|s3://BUCKET/PREFIX?endpoint=URL&region=R] [--nar-redirect-seconds N]
                   [--local-agent [--local-agent-tag k=v]...]
                   [--upstream URL --upstream-key KEY...]... [--upstream-hit-ttl SECONDS]
                   [--upstream-miss-ttl SECONDS]
                   [--cache-ttl SECONDS] [--cache-negative-ttl SECONDS]
  kiln agent new [--name N] [--tag k=v]...
  kiln agent password <agent-id>
  kiln agent list
  kiln agent drain|deactivate|activate <agent-id>
  kiln agent token new [--tag k=v]... [--expires 7d|DATE]   prints the token (once)
  kiln agent token list · kiln agent token revoke <token-id>
  kiln agent run (--id ID --password PW | --register-token FILE --name N [--credentials-file F])
                 [--coordinator URL]... [--builder nix|local]
                 [--max-parallel N] [--system S]... [--tag k=v]... [--store ROOT]
                 [--store-dir DIR] [--system-feature F]... [--mandatory-feature F]...
                 [--state-dir DIR] [--timeout SECONDS] [--max-silent-time SECONDS]
                 [--retry-for SECONDS] [--substituter URL]... [--trusted-public-key KEY]...
  kiln build submit <drv>... [--priority N] [--tag k=v]... [--id UUID]
                   [--ignore-if-output-exists[=kiln|upstream]]
                   [--timeout SECONDS] [--max-silent-time SECONDS] [--wait]
                   [--check-reproducible N [--check-reproducible-by TAG]]
  kiln build watch <build-id>...
  kiln build show <build-id>
  kiln build check <build-id> <agents> [--by TAG]
  kiln build log <build-id> [--attempt N] [--follow]
  kiln build list [--state S]... [--tag k=v]... [--derivation DRV] [--limit N]
  kiln build cancel <build-id>
  kiln build retry <build-id>
  kiln build priority <build-id> <priority>
  kiln build tag <build-id> [k=v]... [--remove KEY]...
  kiln cache gc [--dry-run]
  kiln cache export DIR       the cache as files (file:// layout), only what changed
  kiln cache public-key [--guix]
  kiln qa challenge [--upstream URL]... [--tag k=v]... [--limit N]
  kiln qa fod-check [--tag k=v]... [--name NAME] [--older-than 7d] [--priority N]
                    [--limit N] [--wait]
  kiln qa fod-checks [--derivation DRV]... [--failed] [--latest] [--limit N]

Client commands (all but \`kiln coordinator\` and \`kiln agent run\`) talk to
--coordinator URL (or $KILN_COORDINATOR, default http://127.0.0.1:8745) and print
JSON with --json. They send the admin token from $KILN_ADMIN_TOKEN, or read it from
the coordinator's data directory (the file admin-token in $KILN_DATA_DIR, default
~/.local/share/kiln) when they run on its machine. Priorities are whole numbers
from -1000000 to 1000000 (negative ones as they are: --priority -5).`;

/** The usage entries (a command's first line and its continuation lines), with their words. */
function entries(): { words: string[]; text: string }[] {
  const found: { words: string[]; text: string }[] = [];
  for (const line of USAGE.split('\n')) {
    const m = /^ {2}kiln ((?:[a-z|-]+ ?)+)/.exec(line);
    if (m) found.push({ words: m[1]!.trim().split(' ').filter((w) => !w.startsWith('-')), text: line });
    else if (/^ {4,}\S/.test(line) && found.length > 0) found[found.length - 1]!.text += `\n${line}`;
    else if (line === '' && found.length > 0) break;
  }
  return found;
}

/**
 * The usage of the command that `words` (kiln's arguments, flags left out) name: the
 * entries of its longest known prefix, e.g. `build submit`, else `build`, else all.
 */
export function usageFor(words: string[]): string {
  const all = entries();
  for (let n = Math.min(words.length, 2); n > 0; n--) {
    const prefix = words.slice(0, n);
    const matching = all.filter((e) => prefix.every((w, i) => e.words[i]?.split('|').includes(w)));
    if (matching.length > 0) return `usage:\n${matching.map((e) => e.text).join('\n')}\n\n${USAGE.slice(USAGE.indexOf('Client commands'))}`;
  }
  return USAGE;
}
