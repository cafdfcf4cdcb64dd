/**
 * Plain SVG charts for BENCHMARKS.md, generated from the run's JSON: one grouped bar chart
 * function, linear or log scale. No dependencies; the output is small and diffable.
 */
export interface BarGroup {
  label: string;
  values: (number | undefined)[];
}

export interface ChartOptions {
  title: string;
  unit: string;
  series: string[];
  groups: BarGroup[];
  log?: boolean;
}

const COLORS = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#64748b'] as const;
const color = (i: number): string => COLORS[i % COLORS.length]!;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function short(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(x >= 1e7 ? 0 : 1)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(x >= 1e4 ? 0 : 1)}k`;
  return x >= 10 ? x.toFixed(0) : x.toPrecision(2);
}

function niceStep(raw: number): number {
  const base = 10 ** Math.floor(Math.log10(raw || 1));
  const m = raw / base;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * base;
}

export function barChart(o: ChartOptions): string {
  const width = 720;
  const height = 360;
  const left = 70;
  const bottom = 50;
  const top = 40;
  const plotH = height - top - bottom;
  const plotW = width - left - 20;
  const all = o.groups
    .flatMap((g) => g.values)
    .filter((v): v is number => v !== undefined && Number.isFinite(v) && v > 0);
  const max = all.length ? Math.max(...all) : 1;
  const min = all.length ? Math.min(...all) : 1;
  const lo = o.log ? 10 ** Math.floor(Math.log10(min)) : 0;
  // linear axes end on a round step (1, 2 or 5 × 10^k), so tick labels read cleanly
  const step = niceStep(max / 5);
  const hi = o.log ? 10 ** Math.ceil(Math.log10(max)) : Math.ceil((max * 1.05) / step) * step;
  const y = (v: number): number =>
    o.log
      ? top + plotH - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH
      : top + plotH - (v / hi) * plotH;
  const groupW = plotW / Math.max(1, o.groups.length);
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, o.series.length));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${esc(o.title)}</text>`,
  ];
  const ticks = o.log
    ? Array.from({ length: Math.round(Math.log10(hi / lo)) + 1 }, (_, i) => lo * 10 ** i)
    : Array.from({ length: Math.round(hi / step) + 1 }, (_, i) => step * i);
  for (const t of ticks) {
    const ty = y(t || (o.log ? lo : 0));
    parts.push(`<line x1="${left}" x2="${width - 20}" y1="${ty}" y2="${ty}" stroke="#e5e7eb"/>`);
    parts.push(`<text x="${left - 6}" y="${ty + 4}" text-anchor="end" fill="#374151">${short(t)}</text>`);
  }
  parts.push(
    `<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle" fill="#374151">${esc(o.unit)}</text>`,
  );
  o.groups.forEach((g, gi) => {
    const gx = left + gi * groupW + (groupW - barW * o.series.length) / 2;
    g.values.forEach((v, si) => {
      if (v === undefined || !Number.isFinite(v) || v <= 0) return;
      const by = y(v);
      parts.push(
        `<rect x="${gx + si * barW}" y="${by}" width="${barW - 2}" height="${top + plotH - by}" fill="${color(si)}"><title>${esc(`${g.label} ${o.series[si] ?? ''}: ${v}`)}</title></rect>`,
      );
      parts.push(
        `<text x="${gx + si * barW + (barW - 2) / 2}" y="${by - 3}" text-anchor="middle" font-size="10" fill="#111827">${short(v)}</text>`,
      );
    });
    parts.push(
      `<text x="${left + gi * groupW + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle" fill="#111827">${esc(g.label)}</text>`,
    );
  });
  o.series.forEach((s, si) => {
    const lx = left + si * 150;
    parts.push(`<rect x="${lx}" y="${height - 18}" width="10" height="10" fill="${color(si)}"/>`);
    parts.push(`<text x="${lx + 14}" y="${height - 9}" fill="#374151">${esc(s)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
