// narinfo files: the metadata a binary cache serves for each store path, as Nix
// (src/libstore/nar-info.cc) and Guix (guix/narinfo.scm, guix/scripts/publish.scm)
// read and write them. Hash strings (`sha256:<base32>`) are kept as written.

export class NarInfoError extends Error {
  override name = 'NarInfoError';
}

/** One downloadable NAR: Nix serves one, `guix publish` one per compression. */
export interface NarFile {
  url: string;
  /** Absent means bzip2 to Nix. */
  compression?: string;
  fileHash?: string;
  fileSize?: number;
}

export interface NarInfoField {
  name: string;
  value: string;
}

export interface NarInfo {
  /** Full store path, e.g. `/nix/store/<hash>-<name>`. */
  storePath: string;
  files: NarFile[];
  narHash: string;
  narSize: number;
  /** Base names (`<hash>-<name>`), as the narinfo lists them. */
  references: string[];
  /** Base name of the deriver; Nix's `unknown-deriver` reads as absent. */
  deriver?: string;
  system?: string;
  /** Nix signatures, `Sig:` values (`<key name>:<base64>`), in file order. */
  sigs: string[];
  ca?: string;
  /** Guix's signature, the `Signature:` value (`1;<host>;<base64>`). */
  signature?: string;
  /** Fields neither Nix nor Guix defines, in file order, kept so that nothing is lost. */
  extra: NarInfoField[];
}

/**
 * Where the fields go: `nix` is the order Nix writes (StorePath, URL, Compression,
 * FileHash, FileSize, NarHash, NarSize, References, Deriver, System, Sig, CA); `guix` is
 * `guix publish`'s (StorePath…System, Signature, then one URL block per NAR). In both,
 * unknown fields follow the known ones and a Guix Signature follows them, so that it
 * covers everything above it; but in `guix` a CA (which `guix publish` never writes)
 * goes after the Signature, outside what the Guix signature covers, as a Nix signature
 * does not cover it either (Nix checks a CA by computing the store path from it).
 */
export type NarInfoStyle = 'nix' | 'guix';

const FILE_FIELDS = { URL: 'url', Compression: 'compression', FileHash: 'fileHash', FileSize: 'fileSize' } as const;
type FileFieldName = keyof typeof FILE_FIELDS;
const SINGLE_FIELDS = ['StorePath', 'NarHash', 'NarSize', 'References', 'Deriver', 'System', 'CA', 'Signature'];
const KNOWN_FIELDS = new Set([...SINGLE_FIELDS, ...Object.keys(FILE_FIELDS), 'Sig']);

function parseSize(value: string, what: string): number {
  if (!/^\d+$/.test(value)) throw new NarInfoError(`${what} "${value}" is not a non-negative integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new NarInfoError(`${what} ${value} is too large`);
  return n;
}

interface PartialFile {
  url?: string;
  compression?: string;
  fileHash?: string;
  fileSize?: number;
}

/** Parses narinfo text; every error names the line at fault. */
export function parseNarInfo(text: string): NarInfo {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const seen = new Map<string, number>();
  const single = new Map<string, string>();
  const files: PartialFile[] = [];
  const fileStartLines: number[] = [];
  const sigs: string[] = [];
  const extra: NarInfoField[] = [];

  lines.forEach((line, i) => {
    const lineNo = i + 1;
    const fail = (message: string): never => {
      throw new NarInfoError(`narinfo line ${lineNo}: ${message}`);
    };
    const m = /^([^:\s]+):(?: (.*))?$/.exec(line);
    if (!m) fail(`expected "Name: value", got ${JSON.stringify(line.slice(0, 80))}`);
    const name = m![1]!;
    const value = m![2] ?? '';

    if (name in FILE_FIELDS) {
      const key = FILE_FIELDS[name as FileFieldName];
      // A field the current NAR already has starts the next NAR: that reads Nix's
      // URL-first order and Guix's repeated URL/Compression/FileSize blocks alike.
      let current = files[files.length - 1];
      if (!current || current[key] !== undefined) {
        current = {};
        files.push(current);
        fileStartLines.push(lineNo);
      }
      if (key === 'fileSize') current.fileSize = parseSizeAt(value, 'FileSize', lineNo);
      else if (value === '') fail(`${name} is empty`);
      else current[key] = value;
    } else if (name === 'Sig') {
      if (value === '') fail('Sig is empty');
      sigs.push(value);
    } else if (SINGLE_FIELDS.includes(name)) {
      const previous = seen.get(name);
      if (previous !== undefined) fail(`${name} appears again (first on line ${previous})`);
      seen.set(name, lineNo);
      single.set(name, value);
    } else {
      extra.push({ name, value });
    }
  });

  const require = (name: string): string => {
    const value = single.get(name);
    if (value === undefined || value === '') throw new NarInfoError(`narinfo has no ${name} field`);
    return value;
  };
  const storePath = require('StorePath');
  if (!storePath.startsWith('/') || storePath.endsWith('/')) {
    throw new NarInfoError(`narinfo line ${seen.get('StorePath')}: StorePath "${storePath}" is not an absolute store path`);
  }
  const narSize = parseSizeAt(require('NarSize'), 'NarSize', seen.get('NarSize')!);
  if (files.length === 0) throw new NarInfoError(`narinfo for ${storePath} has no URL field`);
  const complete = files.map((f, i): NarFile => {
    if (f.url === undefined) throw new NarInfoError(`narinfo line ${fileStartLines[i]}: NAR fields without a URL`);
    return { url: f.url, ...pick(f) };
  });
  const references = (single.get('References') ?? '').split(' ').filter((r) => r !== '');
  const badRef = references.find((r) => r.includes('/'));
  if (badRef !== undefined) {
    throw new NarInfoError(`narinfo line ${seen.get('References')}: reference "${badRef}" is not a store path base name`);
  }
  const deriver = single.get('Deriver');

  return {
    storePath,
    files: complete,
    narHash: require('NarHash'),
    narSize,
    references,
    ...(deriver !== undefined && deriver !== '' && deriver !== 'unknown-deriver' ? { deriver } : {}),
    ...optional('system', single.get('System')),
    sigs,
    ...optional('ca', single.get('CA')),
    ...optional('signature', single.get('Signature')),
    extra,
  };
}

function parseSizeAt(value: string, what: string, lineNo: number): number {
  try {
    return parseSize(value, what);
  } catch (error) {
    if (error instanceof NarInfoError) throw new NarInfoError(`narinfo line ${lineNo}: ${error.message}`);
    throw error;
  }
}

function pick(f: PartialFile): Omit<NarFile, 'url'> {
  return {
    ...optional('compression', f.compression),
    ...optional('fileHash', f.fileHash),
    ...(f.fileSize !== undefined ? { fileSize: f.fileSize } : {}),
  };
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value !== undefined && value !== '' ? { [key]: value } : {}) as { [P in K]?: string };
}

function line(name: string, value: string): string {
  if (/[\r\n]/.test(value)) throw new NarInfoError(`${name} value ${JSON.stringify(value)} contains a line break`);
  return `${name}: ${value}\n`;
}

function fileLines(f: NarFile, style: NarInfoStyle): string {
  let out = line('URL', f.url);
  if (f.compression !== undefined) out += line('Compression', f.compression);
  const hash = f.fileHash !== undefined ? line('FileHash', f.fileHash) : '';
  const size = f.fileSize !== undefined ? line('FileSize', String(f.fileSize)) : '';
  // Nix writes FileHash before FileSize; guix publish writes FileSize right after
  // Compression and no FileHash at all.
  return out + (style === 'nix' ? hash + size : size + hash);
}

function validate(info: NarInfo): void {
  if (info.files.length === 0) throw new NarInfoError(`narinfo for ${info.storePath} needs at least one NAR file`);
  if (!Number.isSafeInteger(info.narSize) || info.narSize < 0) throw new NarInfoError(`NarSize ${info.narSize} is not a size`);
  for (const f of info.files) {
    if (f.fileSize !== undefined && (!Number.isSafeInteger(f.fileSize) || f.fileSize < 0)) {
      throw new NarInfoError(`FileSize ${f.fileSize} is not a size`);
    }
  }
  for (const { name } of info.extra) {
    if (KNOWN_FIELDS.has(name) || !/^[^:\s]+$/.test(name)) throw new NarInfoError(`"${name}" cannot be an extra field name`);
  }
}

const caLine = (info: NarInfo) => (info.ca !== undefined ? line('CA', info.ca) : '');

/**
 * The text above where the `Signature:` line goes: what a Guix signature covers. In the
 * `guix` style that is exactly the text `guix publish` signs.
 */
export function renderSignedPart(info: NarInfo, style: NarInfoStyle = 'guix'): string {
  validate(info);
  let out = line('StorePath', info.storePath);
  if (style === 'nix') out += info.files.map((f) => fileLines(f, style)).join('');
  out += line('NarHash', info.narHash);
  out += line('NarSize', String(info.narSize));
  out += line('References', info.references.join(' '));
  if (info.deriver !== undefined) out += line('Deriver', info.deriver);
  if (info.system !== undefined) out += line('System', info.system);
  const sigs = info.sigs.map((s) => line('Sig', s)).join('');
  out += sigs;
  if (style === 'nix') out += caLine(info);
  out += info.extra.map((f) => line(f.name, f.value)).join('');
  return out;
}

export function renderNarInfo(info: NarInfo, style: NarInfoStyle = 'nix'): string {
  let out = renderSignedPart(info, style);
  if (info.signature !== undefined) out += line('Signature', info.signature);
  if (style === 'guix') out += caLine(info);
  if (style === 'guix') out += info.files.map((f) => fileLines(f, style)).join('');
  return out;
}
