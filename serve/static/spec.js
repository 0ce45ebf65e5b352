// The Gosling spec of one file (GET /files/{dcc}/{local_id} once ready, and its /contigs): tracks
// by family, the assembly (hg38 when the file's contigs are hg38's, else the file's own contigs,
// so any file displays) and the first region with data.

// Gosling's own hg38 (its compiler's CHROM_SIZE_HG38): no chrM, so a file with chrM gets its own.
const HG38 = {
  chr1: 248956422, chr2: 242193529, chr3: 198295559, chr4: 190214555, chr5: 181538259,
  chr6: 170805979, chr7: 159345973, chr8: 145138636, chr9: 138394717, chr10: 133797422,
  chr11: 135086622, chr12: 133275309, chr13: 114364328, chr14: 107043718, chr15: 101991189,
  chr16: 90338345, chr17: 83257441, chr18: 80373285, chr19: 58617616, chr20: 64444167,
  chr21: 46709983, chr22: 50818468, chrX: 156040895, chrY: 57227415,
};
// Extra columns of the ENCODE peak formats after BED6 (Gosling reads them as `customFields`).
const PEAK_FIELDS = {
  narrowPeak: ['signalValue', 'pValue', 'qValue', 'peak'],
  broadPeak: ['signalValue', 'pValue', 'qValue'],
};
// How wide the first view is: about `wanted` records, within [min, max] bases. Gosling 1.0.7 loads
// no reads while a tile is wider than 20 kb (its BamDataFetcher's MAX_TILE_WIDTH), hence 10 kb.
const WINDOW = {
  alignments: { wanted: 200, min: 1_000, max: 10_000 },
  intervals: { wanted: 40, min: 5_000, max: 2_000_000 },
};
const STRANDS = { field: 'strand', type: 'nominal', domain: ['+', '-', '.'], range: ['#c0504d', '#4f81bd', '#8c8c8c'] };

/** 'hg38' when every contig is one of hg38's with its length, else [[name, length], ...]. */
export function assemblyOf(contigs) {
  if (contigs.length && contigs.every((c) => c.length_declared && HG38[c.name] === c.length)) return 'hg38';
  return contigs.map((c) => [c.name, c.length]);
}

/** The first view: around the first record, wide enough for a few dozen records (or a whole
 * contig when the first record is not known, as for bigWig). Null for a file without records. */
export function initialRegion(file, contigs) {
  const first = contigs.first;
  const contig = first ? contigs.contigs.find((c) => c.name === first.contig) : contigs.contigs[0];
  if (!contig) return null;
  if (!first) return { chromosome: contig.name, interval: [1, contig.length] };
  const { wanted, min, max } = WINDOW[file.family] || WINDOW.intervals;
  const density = contig.records ? contig.records / contig.length : 0;
  const width = Math.round(Math.min(Math.max(density ? wanted / density : min, min), max, contig.length));
  const start = Math.max(1, Math.min(Math.floor(first.start - width * 0.05), contig.length - width));
  return { chromosome: contig.name, interval: [start, Math.min(contig.length, start + width)] };
}

/** The spec: ``base`` is the API's origin (Gosling's fetchers run in workers, which need absolute
 * URLs); ``width`` the tracks' width in pixels. */
export function goslingSpec(file, contigs, base, width) {
  const url = new URL(file.data_url, base).href;
  const indexUrl = file.index_url ? new URL(file.index_url, base).href : null;
  const tracks = file.family === 'alignments' ? alignmentTracks(url, indexUrl, width)
    : file.format === 'bigWig' ? signalTracks(url, width)
      : file.format === 'VCF' ? variantTracks(url, indexUrl, width)
        : file.format === 'GFF3' || file.format === 'GTF' ? featureTracks(url, indexUrl, width)
          : intervalTracks(file.format, url, indexUrl, width);
  return {
    assembly: assemblyOf(contigs.contigs),
    layout: 'linear',
    arrangement: 'vertical',
    xDomain: initialRegion(file, contigs),
    spacing: 12,
    views: [{ tracks }],
  };
}

function alignmentTracks(url, indexUrl, width) {
  const data = { type: 'bam', url, indexUrl };
  const span = { x: { field: 'start', type: 'genomic', axis: 'top' }, xe: { field: 'end', type: 'genomic' } };
  return [
    {
      id: 'coverage', title: 'Coverage', data, ...span, width, height: 90,
      dataTransform: [{ type: 'coverage', startField: 'start', endField: 'end' }],
      mark: 'bar',
      y: { field: 'coverage', type: 'quantitative', axis: 'right' },
      color: { value: '#7d8fa8' },
    },
    {
      id: 'reads', title: 'Reads (pileup)', data, ...span, width, height: 240,
      dataTransform: [{
        type: 'displace', method: 'pile', newField: 'pileup-row',
        boundingBox: { startField: 'start', endField: 'end', padding: 5, isPaddingBP: true },
      }],
      mark: 'rect',
      row: { field: 'pileup-row', type: 'nominal', padding: 0.2 },
      color: { ...STRANDS, domain: ['+', '-'], range: STRANDS.range.slice(0, 2), legend: true },
      stroke: { value: 'white' },
      strokeWidth: { value: 0.5 },
      tooltip: [
        { field: 'start', type: 'genomic' }, { field: 'end', type: 'genomic' },
        { field: 'strand', type: 'nominal' }, { field: 'mapq', type: 'quantitative' },
        { field: 'cigar', type: 'nominal' },
      ],
    },
  ];
}

function variantTracks(url, indexUrl, width) {
  return [{
    id: 'variants', title: 'Variants (QUAL)', width, height: 180,
    data: { type: 'vcf', url, indexUrl, sampleLength: 5000 },
    alignment: 'overlay',
    x: { field: 'POS', type: 'genomic', axis: 'top' },
    y: { field: 'QUAL', type: 'quantitative', axis: 'right' },
    tracks: [
      { mark: 'bar', size: { value: 1 }, color: { value: '#b8b8b8' } },
      {
        mark: 'point', size: { value: 6 }, opacity: { value: 0.9 },
        color: {
          field: 'MUTTYPE', type: 'nominal', legend: true,
          domain: ['substitution', 'insertion', 'deletion', 'unknown'],
          range: ['#4f81bd', '#9bbb59', '#c0504d', '#8c8c8c'],
        },
      },
    ],
    tooltip: [
      { field: 'POS', type: 'genomic' }, { field: 'ID', type: 'nominal' }, { field: 'REF', type: 'nominal' },
      { field: 'ALT', type: 'nominal' }, { field: 'QUAL', type: 'quantitative' }, { field: 'MUTTYPE', type: 'nominal' },
    ],
  }];
}

function intervalTracks(format, url, indexUrl, width) {
  const data = { type: 'bed', url, indexUrl };
  if (PEAK_FIELDS[format]) data.customFields = PEAK_FIELDS[format];
  return [{
    id: 'intervals', title: format, data, width, height: 160,
    dataTransform: [{
      type: 'displace', method: 'pile', newField: 'row',
      boundingBox: { startField: 'chromStart', endField: 'chromEnd', padding: 1 },
    }],
    mark: 'rect',
    x: { field: 'chromStart', type: 'genomic', axis: 'top' },
    xe: { field: 'chromEnd', type: 'genomic' },
    row: { field: 'row', type: 'nominal', padding: 0.25 },
    color: { ...STRANDS, legend: true },
    tooltip: [
      { field: 'chromStart', type: 'genomic' }, { field: 'chromEnd', type: 'genomic' },
      { field: 'name', type: 'nominal' }, { field: 'score', type: 'quantitative' }, { field: 'strand', type: 'nominal' },
    ],
  }];
}

function featureTracks(url, indexUrl, width) {
  // Gosling's GFF fetcher keeps the top-level features (genes, or transcripts in a converted GTF).
  const attributes = ['ID', 'Name'].map((attribute) => ({ attribute, defaultValue: '' }));
  return [{
    id: 'features', title: 'Features', width, height: 120,
    data: { type: 'gff', url, indexUrl, attributesToFields: attributes },
    alignment: 'overlay',
    x: { field: 'start', type: 'genomic', axis: 'top' },
    xe: { field: 'end', type: 'genomic' },
    row: { field: 'strand', type: 'nominal', domain: ['+', '-', '.'] },
    color: { ...STRANDS, legend: true },
    tracks: [
      { mark: 'rect', size: { value: 12 } },
      { mark: 'text', text: { field: 'Name', type: 'nominal' }, color: { value: '#1f2933' }, style: { dy: -14 } },
    ],
    tooltip: [
      { field: 'type', type: 'nominal' }, { field: 'ID', type: 'nominal' }, { field: 'Name', type: 'nominal' },
      { field: 'start', type: 'genomic' }, { field: 'end', type: 'genomic' }, { field: 'strand', type: 'nominal' },
    ],
  }];
}

function signalTracks(url, width) {
  return [{
    id: 'signal', title: 'Signal', width, height: 160,
    data: { type: 'bigwig', url, column: 'position', value: 'value' },
    mark: 'area',
    x: { field: 'position', type: 'genomic', axis: 'top' },
    y: { field: 'value', type: 'quantitative', axis: 'right' },
    color: { value: '#4f81bd' },
  }];
}
