// grpc-message as the gRPC spec writes it: connect-node percent-encodes it with
// encodeURIComponent (":" and "/" too), which grpc-js clients do not decode (they use
// decodeURI), so their users read "%3A" and "%2F". The spec asks only bytes outside
// 0x20-0x7E and "%" itself to be encoded; every client decodes that form.
import type { RequestHandler } from './listener.js';

const NAME = 'grpc-message';

/** Percent-encodes what the gRPC spec asks: bytes outside 0x20-0x7E, and "%". */
export function specEncodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

function reencode(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return specEncodeGrpcMessage(decodeURIComponent(value));
  } catch {
    return value; // not connect's encoding: left as it is
  }
}

/** Spec-encodes a grpc-message that connect encoded, in a record of headers (in place). */
export function specEncodeGrpcMessageIn(headers: unknown): void {
  if (!headers || typeof headers !== 'object' || Array.isArray(headers)) return;
  const record = headers as Record<string, unknown>;
  for (const key of Object.keys(record)) if (key.toLowerCase() === NAME) record[key] = reencode(record[key]);
}

/** Wraps an HTTP handler so that grpc-message in headers (trailers-only answers) and trailers is spec-encoded. */
export function specGrpcMessages(next: RequestHandler): RequestHandler {
  return (req, res) => {
    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => typeof res;
    const addTrailers = res.addTrailers.bind(res) as (headers: unknown) => void;
    (res as { writeHead: unknown }).writeHead = (...args: unknown[]) => {
      for (const a of args) specEncodeGrpcMessageIn(a);
      return writeHead(...args);
    };
    (res as { addTrailers: unknown }).addTrailers = (headers: unknown) => {
      specEncodeGrpcMessageIn(headers);
      addTrailers(headers);
    };
    next(req, res);
  };
}
