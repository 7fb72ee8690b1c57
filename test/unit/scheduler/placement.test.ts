// The system-feature rule and how features are read from a derivation, as Nix reads them.
import { describe, expect, test } from '@jest/globals';
import { featuresMatch, requiredFeatures, validateAgentFeatures } from '../../../src/scheduler/placement.js';
import { makeDerivation } from '../../../src/store/make-derivation.js';

const drvWith = (env: Record<string, string>) =>
  makeDerivation({ name: 'f', system: 'x86_64-linux', builder: '/bin/sh', env }, '/nix/store', new Map()).drv;

describe('system features', () => {
  test('requiredSystemFeatures is split on white space, each feature once, sorted', () => {
    expect(requiredFeatures(drvWith({ requiredSystemFeatures: ' kvm\tbig-parallel  kvm\n' }))).toEqual(['big-parallel', 'kvm']);
    expect(requiredFeatures(drvWith({}))).toEqual([]);
  });

  test('structured attributes name them as a list in __json', () => {
    expect(requiredFeatures(drvWith({ __json: JSON.stringify({ requiredSystemFeatures: ['benchmark', 'kvm'] }) }))).toEqual(['benchmark', 'kvm']);
    expect(requiredFeatures(drvWith({ __json: '{not json' }))).toEqual([]);
  });

  test('an agent must support every required feature, and be required for every mandatory one', () => {
    const plain = validateAgentFeatures({ supported: ['big-parallel'], mandatory: [] }, 't');
    const reserved = validateAgentFeatures({ supported: ['kvm'], mandatory: ['benchmark'] }, 't');
    expect(reserved.supported).toEqual(['benchmark', 'kvm']);
    expect(featuresMatch([], plain)).toBe(true);
    expect(featuresMatch(['big-parallel'], plain)).toBe(true);
    expect(featuresMatch(['kvm'], plain)).toBe(false);
    expect(featuresMatch([], reserved)).toBe(false);
    expect(featuresMatch(['kvm'], reserved)).toBe(false);
    expect(featuresMatch(['benchmark', 'kvm'], reserved)).toBe(true);
  });

  test('a feature name with white space, or too many features, is refused with the name', () => {
    expect(() => validateAgentFeatures({ supported: ['big parallel'], mandatory: [] }, 'Hello')).toThrow(/Hello: system feature "big parallel"/);
    expect(() => validateAgentFeatures({ supported: Array.from({ length: 65 }, (_, i) => `f${i}`), mandatory: [] }, 'Hello')).toThrow(/at most 64/);
  });
});
