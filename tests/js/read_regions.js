// Reads a file over HTTP with the readers Gosling 1.0.7 pins, and prints JSON.
//   node read_regions.js bam|tabix|bigwig <dataUrl> <indexUrl|-> '<[["chr1",0,1000], ...]>'
//   node read_regions.js csv <url>
// bam: per region [name, flags, start] of every record; tabix: the lines; bigwig: [start, end,
// score] at base level; csv: the text, read the way Gosling does (one GET, which must be a 200).
const { BamFile } = require('@gmod/bam')
const { TabixIndexedFile } = require('@gmod/tabix')
const { BigWig } = require('@gmod/bbi')
const { RemoteFile } = require('generic-filehandle')

async function main() {
  const [kind, dataUrl, indexUrl, regionsJson] = process.argv.slice(2)
  if (kind === 'csv') {
    const text = await new RemoteFile(dataUrl, { fetch }).readFile('utf8')
    process.stdout.write(JSON.stringify(text))
    return
  }
  const regions = JSON.parse(regionsJson)
  const out = []
  if (kind === 'bigwig') {
    const bw = new BigWig({ filehandle: new RemoteFile(dataUrl, { fetch }) })
    await bw.getHeader()
    for (const [chrom, start, end] of regions) {
      const features = await bw.getFeatures(chrom, start, end, { scale: 1 })
      out.push(features.map(f => [f.start, f.end, f.score]))
    }
  } else if (kind === 'bam') {
    const bam = new BamFile({
      bamFilehandle: new RemoteFile(dataUrl, { fetch }),
      baiFilehandle: new RemoteFile(indexUrl, { fetch }),
    })
    await bam.getHeader()
    for (const [chrom, start, end] of regions) {
      const records = await bam.getRecordsForRange(chrom, start, end)
      out.push(records.map(r => [r.get('name'), r.flags, r.get('start')]))
    }
  } else {
    const file = new TabixIndexedFile({
      filehandle: new RemoteFile(dataUrl, { fetch }),
      tbiFilehandle: new RemoteFile(indexUrl, { fetch }),
    })
    await file.getHeader()
    for (const [chrom, start, end] of regions) {
      const lines = []
      await file.getLines(chrom, start, end, line => lines.push(line))
      out.push(lines)
    }
  }
  process.stdout.write(JSON.stringify(out))
}

main().catch(err => {
  process.stderr.write(String(err && err.stack ? err.stack : err))
  process.exit(1)
})
