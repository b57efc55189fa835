/**
 * Summarise V8 CPU profiles (`.cpuprofile`, as written by `npm run bench --
 * --cpu-prof=DIR` or `node --cpu-prof`) by self time: per function, per file
 * and per area (Node's internals, each package, the project's own code, GC).
 *
 *   node --import tsx bench/profile-summary.ts DIR/ws-echo-sockgate-r*.cpuprofile
 *   node --import tsx bench/profile-summary.ts --top=40 a.cpuprofile b.cpuprofile
 *
 * Several files are added up, so the rounds of one target read as one profile.
 * Shares are of the busy time: `(idle)` samples, where the process waited in
 * epoll, are left out, so the shares say where the proxy's CPU went.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

const DEFAULT_TOP = 25
const ROOT = fileURLToPath(new URL('../', import.meta.url))

/** Where a frame's code lives, short: `node:internal/stream_base_commons`, `ws`, `src/tunnel.ts`. */
function fileOf (frame: CallFrame): string {
  const url = frame.url
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native)'
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const modules = path.lastIndexOf('/node_modules/')
  if (modules >= 0) return `node_modules/${path.slice(modules + '/node_modules/'.length)}`
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : path
}

/** The coarse bucket a file belongs to: a package name, `node internals`, `project`, or a V8 pseudo-frame. */
function areaOf (file: string): string {
  if (file.startsWith('node_modules/')) {
    const parts = file.split('/')
    return parts[1]!.startsWith('@') ? `${parts[1]}/${parts[2]}` : parts[1]!
  }
  if (file.startsWith('node:')) return 'node internals (JS)'
  if (file.startsWith('(')) return file
  return 'project'
}

/** Adds `micros` to `key` in `table`. */
function add (table: Map<string, number>, key: string, micros: number): void {
  table.set(key, (table.get(key) ?? 0) + micros)
}

/** Self time per function, file and area, in microseconds, over every profile given. */
function selfTimes (files: string[]): { functions: Map<string, number>, files: Map<string, number>, areas: Map<string, number>, busy: number, idle: number } {
  const functions = new Map<string, number>()
  const byFile = new Map<string, number>()
  const areas = new Map<string, number>()
  let busy = 0
  let idle = 0
  for (const name of files) {
    const profile = JSON.parse(readFileSync(name, 'utf8')) as CpuProfile
    const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]))
    profile.samples.forEach((id, i) => {
      const frame = frames.get(id)
      const micros = profile.timeDeltas[i] ?? 0
      if (frame === undefined) return
      if (frame.functionName === '(idle)') {
        idle += micros
        return
      }
      busy += micros
      const file = fileOf(frame)
      const fn = frame.url === '' ? frame.functionName : `${frame.functionName || '(anonymous)'}  ${file}:${frame.lineNumber + 1}`
      add(functions, fn, micros)
      add(byFile, file, micros)
      add(areas, areaOf(file), micros)
    })
  }
  return { functions, files: byFile, areas, busy, idle }
}

function printTable (title: string, table: Map<string, number>, busy: number, top: number): void {
  console.log(`\n${title}`)
  const rows = [...table].sort((a, b) => b[1] - a[1]).slice(0, top)
  for (const [key, micros] of rows) {
    console.log(`  ${(100 * micros / busy).toFixed(1).padStart(5)}%  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${key}`)
  }
}

function main (): void {
  const args = process.argv.slice(2)
  const topArg = args.find((a) => a.startsWith('--top='))
  const top = topArg === undefined ? DEFAULT_TOP : Number(topArg.slice('--top='.length))
  const files = args.filter((a) => !a.startsWith('--'))
  if (files.length === 0 || !Number.isInteger(top) || top <= 0) {
    console.error('usage: node --import tsx bench/profile-summary.ts [--top=N] FILE.cpuprofile [...]')
    process.exitCode = 2
    return
  }
  const t = selfTimes(files)
  console.log(`${files.length} profile(s): ${(t.busy / 1000).toFixed(0)} ms busy, ${(t.idle / 1000).toFixed(0)} ms idle; shares are of busy time`)
  printTable('by area (self time)', t.areas, t.busy, top)
  printTable('by file (self time)', t.files, t.busy, top)
  printTable('by function (self time)', t.functions, t.busy, top)
}

main()
