import { describe, expect, test } from '@jest/globals';
import { trace } from '@opentelemetry/api';
import fc from 'fast-check';
import { buildRootSpanId, buildTraceId, contextFromTraceparent, formatTraceparent, buildRootSpanContext } from '../../../src/telemetry/build-trace.js';

describe('build trace ids', () => {
  test('follow from the build id and the attempt alone, and differ between attempts and builds', () => {
    const id = '0f9c3d52-6a4e-4f7e-9a41-2d9a1c7b5e10';
    expect(buildTraceId(id, 1)).toMatch(/^[0-9a-f]{32}$/);
    expect(buildRootSpanId(id, 1)).toMatch(/^[0-9a-f]{16}$/);
    expect(buildTraceId(id, 1)).toBe(buildTraceId(id.toUpperCase(), 1));
    expect(buildTraceId(id, 2)).not.toBe(buildTraceId(id, 1));
    expect(buildTraceId('1f9c3d52-6a4e-4f7e-9a41-2d9a1c7b5e10', 1)).not.toBe(buildTraceId(id, 1));
  });

  test('a traceparent made from a span context reads back as that span context', () => {
    fc.assert(
      fc.property(fc.uuid(), fc.integer({ min: 1, max: 1000 }), (id, attempt) => {
        const span = buildRootSpanContext(id, attempt);
        const parent = trace.getSpanContext(contextFromTraceparent(formatTraceparent(span)));
        expect(parent).toEqual({ ...span, isRemote: true });
      }),
    );
  });

  test('a missing or malformed traceparent gives no parent', () => {
    for (const bad of ['', 'garbage', '00-00000000000000000000000000000000-0000000000000000-01', '01-abc-def-01', `00-${'a'.repeat(32)}-${'b'.repeat(15)}-01`]) {
      expect([bad, trace.getSpanContext(contextFromTraceparent(bad))]).toEqual([bad, undefined]);
    }
  });
});
