// The strict text-format reader the /metrics tests rely on refuses what Prometheus refuses.
import { describe, expect, test } from '@jest/globals';
import { parsePrometheusText, sampleValue } from '../../helpers/prometheus-text.js';

describe('the Prometheus text-format reader', () => {
  test('reads families, escaped labels and histograms', () => {
    const m = parsePrometheusText(
      [
        '# HELP jobs_total Jobs done.',
        '# TYPE jobs_total counter',
        'jobs_total{queue="a\\"b",path="c:\\\\d\\n"} 3',
        '# TYPE lat_seconds histogram',
        'lat_seconds_bucket{le="0.1"} 1',
        'lat_seconds_bucket{le="+Inf"} 2',
        'lat_seconds_sum 0.3',
        'lat_seconds_count 2',
        '# TYPE up gauge',
        'up NaN 1700000000000',
      ].join('\n'),
    );
    expect(m.get('jobs_total')).toMatchObject({ type: 'counter', help: 'Jobs done.' });
    expect(sampleValue(m, 'jobs_total', { queue: 'a"b', path: 'c:\\d\n' })).toBe(3);
    expect(sampleValue(m, 'lat_seconds_count')).toBe(2);
    expect(sampleValue(m, 'up')).toBeNaN();
  });

  test.each([
    ['a sample of no declared family', 'nothing_declared 1'],
    ['a bad label', '# TYPE x gauge\nx{1a="b"} 1'],
    ['an unquoted label value', '# TYPE x gauge\nx{a=b} 1'],
    ['a value that is no number', '# TYPE x gauge\nx one'],
    ['buckets that shrink', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1'],
    ['a histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1'],
    ['+Inf unequal to the count', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 3'],
    ['a TYPE after samples', '# HELP x x\nx 1\n# TYPE x gauge'],
  ])('refuses %s', (_what, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });
});
