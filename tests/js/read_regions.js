// Reads regions from an artifact over HTTP with the readers Gosling 1.0.7 pins, and prints JSON.
//   node read_regions.js bam|tabix <dataUrl> <indexUrl> '<[["chr1",0,1000], ...]>'
// bam: for each region, [name, flags, start] of every record; tabix: the lines.
const { BamFile } = require('@gmod/bam')
const { TabixIndexedFile } = require('@gmod/tabix')
const { RemoteFile } = require('generic-filehandle')

async function main() {
  const [kind, dataUrl, indexUrl, regionsJson] = process.argv.slice(2)
  const regions = JSON.parse(regionsJson)
  const out = []
  if (kind === 'bam') {
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
