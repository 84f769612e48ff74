// Turns the results directory's *.json (the shape of bench/lib.ts) into README.md, one table per
// bench table with the targets beside the measured values, and one hand-written SVG per
// table: throughput ratio to the baseline and client CPU µs per query, per contender.
//   node --import tsx bench/report.ts [results dir]     (run by bench/run-all.ts)
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchResult, ContenderResult, ResultTable } from './lib.js';
import { formatNumber, resultsDir } from './lib.js';

// Reading order: the targets first, then the peers, then the isolated costs.
const ORDER = [
  'prisma-findunique',
  'drizzle-select',
  'token-capture',
  'apply-delay',
  'guarantees',
  'drizzle-overhead',
  'core-read-overhead',
  'core-pick',
  'testkit-start',
];

const escapeXml = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const slug = (text: string): string =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');

/** Horizontal bars, one per contender; the baseline's bar in grey. */
function bars(
  rows: readonly ContenderResult[],
  value: (row: ContenderResult) => number,
  baseline: string,
  title: string,
  x0: number,
  width: number,
  label: (v: number) => string,
): string {
  const labelWidth = 170;
  const barArea = width - labelWidth - 70;
  const max = Math.max(...rows.map(value).filter(Number.isFinite), 1e-9);
  const parts = [`<text x="${x0}" y="18" class="title">${escapeXml(title)}</text>`];
  rows.forEach((row, i) => {
    const y = 30 + i * 24;
    const v = value(row);
    const w = Number.isFinite(v) ? Math.max(1, (v / max) * barArea) : 0;
    const fill = row.name === baseline ? '#9aa5b1' : row.name.startsWith('lagless') ? '#2f7d5b' : '#4a6fa5';
    parts.push(
      `<text x="${x0 + labelWidth - 6}" y="${y + 14}" text-anchor="end">${escapeXml(row.name)}</text>`,
      `<rect x="${x0 + labelWidth}" y="${y + 2}" width="${w.toFixed(1)}" height="16" fill="${fill}"/>`,
      `<text x="${x0 + labelWidth + w + 4}" y="${y + 14}">${escapeXml(label(v))}</text>`,
    );
  });
  return parts.join('\n  ');
}

function svgOf(t: ResultTable): string {
  const half = 440;
  const height = 40 + t.contenders.length * 24;
  const body = [
    bars(
      t.contenders,
      (c) => c.ratios.throughput,
      t.baseline,
      `${t.unit} ÷ ${t.baseline}`,
      0,
      half,
      (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–'),
    ),
    bars(t.contenders, (c) => c.cpuUsPerQuery, t.baseline, 'client CPU µs per query', half + 20, half, formatNumber),
  ].join('\n  ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * half + 20}" height="${height}" viewBox="0 0 ${2 * half + 20} ${height}" font-family="sans-serif" font-size="12">
  <style>.title { font-weight: bold; }</style>
  <rect width="100%" height="100%" fill="#ffffff"/>
  ${body}
</svg>
`;
}

function markdownTable(t: ResultTable): string {
  const extra = Object.entries(t.extraColumns ?? {});
  const hasLatency = t.contenders.some((c) => c.latency);
  const header = [
    'contender',
    t.unit,
    `× ${t.baseline}`,
    'CPU µs/query',
    `CPU × ${t.baseline}`,
    ...(hasLatency ? ['p50 ms', 'p99 ms'] : []),
    ...extra.map(([, title]) => title),
  ];
  const lines = t.contenders.map((c) => [
    c.name === t.baseline ? `${c.name} (baseline)` : c.name,
    formatNumber(c.throughput),
    `${c.ratios.throughput.toFixed(2)}×`,
    formatNumber(c.cpuUsPerQuery),
    c.ratios.cpu === null ? '–' : `${c.ratios.cpu.toFixed(2)}×`,
    ...(hasLatency ? [formatNumber(c.latency?.p50Ms ?? Number.NaN), formatNumber(c.latency?.p99Ms ?? Number.NaN)] : []),
    ...extra.map(([key]) => (c.extra?.[key] === undefined ? '' : formatNumber(c.extra[key] as number))),
  ]);
  const out = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '--:')).join('|')}|`];
  for (const line of lines) out.push(`| ${line.join(' | ')} |`);
  for (const tr of t.targets ?? []) {
    out.push(
      '',
      `- Target: ${tr.label} ${tr.op} ${tr.limit}: measured **${tr.measured}**, ${tr.met ? 'met' : '**not met**'}`,
    );
  }
  return out.join('\n');
}

export function writeReport(dir: string): { markdown: string; charts: string[] } {
  const results = readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .map((file) => JSON.parse(readFileSync(join(dir, file), 'utf8')) as Partial<BenchResult>)
    .filter((r): r is BenchResult => Array.isArray(r.tables) && typeof r.bench === 'string')
    .sort((a, b) => {
      const rank = (r: BenchResult) => (ORDER.includes(r.bench) ? ORDER.indexOf(r.bench) : ORDER.length);
      return rank(a) - rank(b) || a.bench.localeCompare(b.bench);
    });
  // Charts of tables a bench no longer has must not linger beside the new ones.
  for (const file of readdirSync(dir)) if (file.endsWith('.svg')) rmSync(join(dir, file));
  const charts: string[] = [];
  const targets = results.flatMap((r) => r.tables.flatMap((t) => (t.targets ?? []).map((tr) => ({ r, t, tr }))));
  const md = [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (bench/run-all.ts → bench/report.ts); do not edit by hand. Client and',
    'servers share one machine: compare ratios within one run, not absolute numbers across runs. CPU µs',
    "per query is `process.cpuUsage()` of the bench process over the measured windows ÷ operations: the client's cost,",
    'steadier than wall-clock ratios on a shared machine.',
    '',
  ];
  if (results.some((r) => r.quick))
    md.push('**Quick mode (`BENCH_QUICK=1`): short windows, noisy; not for quoting.**', '');
  if (targets.length > 0) {
    md.push(
      '## Targets (issue 11; measured, not asserted)',
      '',
      '| bench | table | target | measured | |',
      '|---|---|---|--:|---|',
    );
    for (const { r, t, tr } of targets) {
      md.push(
        `| ${r.bench} | ${t.title} | ${tr.label} ${tr.op} ${tr.limit} | ${tr.measured} | ${tr.met ? 'met' : '**not met**'} |`,
      );
    }
    md.push('');
  }
  for (const r of results) {
    const options = Object.entries(r.options)
      .map(([key, value]) => `${key} ${value}`)
      .join(', ');
    md.push(
      `## ${r.bench}`,
      '',
      `${r.title}.`,
      '',
      `${r.date.slice(0, 16).replace('T', ' ')} UTC, node ${r.node}, ${r.machine} CPUs, ${r.totalSeconds} s; ${options}.`,
      '',
    );
    for (const [name, description] of Object.entries(r.contenders)) md.push(`- \`${name}\`: ${description}`);
    md.push('');
    r.tables.forEach((t, i) => {
      const chart = `${r.bench}-${i + 1}-${slug(t.title).slice(0, 40)}.svg`;
      writeFileSync(join(dir, chart), svgOf(t));
      charts.push(chart);
      md.push(`### ${t.title}`, '', markdownTable(t), '', `![${escapeXml(t.title)}](${chart})`, '');
    });
    for (const note of r.notes ?? []) md.push(`Note: ${note}`, '');
  }
  const markdown = `${md.join('\n').trimEnd()}\n`;
  writeFileSync(join(dir, 'README.md'), markdown);
  return { markdown, charts };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2] ?? resultsDir();
  const { charts } = writeReport(dir);
  console.log(`${join(dir, 'README.md')} and ${charts.length} charts written`);
}
