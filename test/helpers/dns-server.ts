/**
 * A real DNS responder for the discovery tests: UDP on 127.0.0.1, port 0,
 * packets encoded and decoded by `dns-packet`. It answers A, AAAA and SRV
 * questions from a table the test changes while the gateway runs, and can be
 * told to fail (SERVFAIL, REFUSED, or no answer at all).
 */
import dgram from 'node:dgram'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import dnsPacket, { type Answer, type SrvData } from 'dns-packet'

/** What one name resolves to; a type left out has no records (NOERROR, empty answer). */
export interface DnsRecords {
  A?: string[]
  AAAA?: string[]
  SRV?: SrvData[]
}

/** How the responder misbehaves: an error code for every question, or silence (the client times out). */
export type DnsFailure = 'SERVFAIL' | 'REFUSED' | 'no-answer'

/** RCODE values (RFC 1035 §4.1.1, RFC 2136), the low four bits of the header flags. */
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const

export interface DnsServer {
  /** `127.0.0.1:PORT`, as the `discover.resolver` option takes it. */
  readonly address: string
  /** Replace the records of `name`; `null` removes the name (NXDOMAIN from then on). */
  set (name: string, records: DnsRecords | null): void
  /** Fail every question from now on, or answer again (`null`). */
  fail (failure: DnsFailure | null): void
  /** Questions received so far, of any type. */
  readonly questions: number
}

/** Start a responder on 127.0.0.1 port 0, closed when the test ends. */
export async function startDnsServer (t: TestContext): Promise<DnsServer> {
  const table = new Map<string, DnsRecords>()
  let failure: DnsFailure | null = null
  let questions = 0
  const socket = dgram.createSocket('udp4')

  socket.on('message', (message, peer) => {
    let query: ReturnType<typeof dnsPacket.decode>
    try {
      query = dnsPacket.decode(message)
    } catch {
      return
    }
    questions++
    if (failure === 'no-answer') return
    const question = query.questions?.[0]
    const records = question === undefined ? undefined : table.get(question.name.toLowerCase())
    const answers: Answer[] = []
    if (question !== undefined && records !== undefined && failure === null) {
      const { name, type } = question
      if (type === 'A') for (const data of records.A ?? []) answers.push({ type: 'A', name, ttl: 1, data })
      if (type === 'AAAA') for (const data of records.AAAA ?? []) answers.push({ type: 'AAAA', name, ttl: 1, data })
      if (type === 'SRV') for (const data of records.SRV ?? []) answers.push({ type: 'SRV', name, ttl: 1, data })
    }
    const rcode = failure !== null ? RCODE[failure] : records === undefined ? RCODE.NXDOMAIN : RCODE.NOERROR
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: query.questions ?? [],
      answers,
    })
    socket.send(reply, peer.port, peer.address)
  })

  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  const { port } = socket.address() as AddressInfo

  return {
    address: `127.0.0.1:${port}`,
    set (name, records) {
      if (records === null) table.delete(name.toLowerCase())
      else table.set(name.toLowerCase(), records)
    },
    fail (f) { failure = f },
    get questions () { return questions },
  }
}
