/**
 * DNS discovery (`discover`): a pool's members looked up in DNS when the
 * gateway is created and every `interval` after, applied to the pool in
 * place. A newcomer joins (after one passing check when the pool has
 * `health`); a server that left the answer drains and leaves the pool once
 * its last tunnel is gone; one that comes back while draining is taken back.
 * A failed or empty lookup changes nothing and is reported once.
 */
import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { DiscoveryError } from '../errors.js'
import type { NormalizedDiscover } from '../options.js'
import type { Pool } from './pool.js'
import type { UpstreamServer } from './server.js'

/** One server of a DNS answer. */
export interface Member {
  /** Normalised origin, the server's identity. */
  url: string
  /** The SRV target's first label when it names exactly one server of the answer, else null. */
  name: string | null
}

/** What discovery tells the gateway. */
export interface DiscoveryListener {
  /** `server` entered the pool (`'discovered'`), or a draining one is back in the answer (`'returned'`). */
  added (server: UpstreamServer, reason: 'discovered' | 'returned'): void
  /** `server` left the answer: it takes no new work and drains (`'left-dns'`). */
  removed (server: UpstreamServer, reason: 'left-dns'): void
  /** A server just joined; with `health` it must pass a check before it takes work. */
  admit (server: UpstreamServer): void
  /** A lookup failed or found nothing, for the first time since the last good one. */
  failed (error: DiscoveryError): void
  /** A lookup succeeded after failures. */
  recovered (): void
}

/** Resolver codes that mean "no such records" rather than "no answer": an empty family, a name that does not exist. */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND'])
/** Longest wait for one DNS reply before the resolver tries again (it tries twice). */
const MAX_QUERY_TIMEOUT = 2_000

/** Records of one type, or none when the name has none of that type. Other failures reject. */
async function records<T> (query: Promise<T[]>): Promise<T[]> {
  try {
    return await query
  } catch (err) {
    if (NO_RECORDS.has((err as { code?: string }).code ?? '')) return []
    throw err
  }
}

/** IPv4 and IPv6 addresses of `name` (an address literal is its own answer); a family with no records adds none. */
async function addressesOf (resolver: Resolver, name: string): Promise<string[]> {
  if (isIP(name) !== 0) return [name]
  const [v4, v6] = await Promise.all([records(resolver.resolve4(name)), records(resolver.resolve6(name))])
  return [...v4, ...v6]
}

function origin (address: string, port: number): string {
  return new URL(`http://${isIP(address) === 6 ? `[${address}]` : address}:${port}`).origin
}

/**
 * Look up the members for `spec`: every A and AAAA address of `spec.dns`
 * on `spec.port`, or with `srv`, every address of every SRV target on the
 * record's port (SRV priority and weight are not used). Sorted by URL, so
 * the same answer always gives the same list. Rejects when any query fails
 * for another reason than "no records": half an answer is no answer.
 */
export async function lookupMembers (resolver: Resolver, spec: NormalizedDiscover): Promise<Member[]> {
  const members = new Map<string, Member>()
  if (!spec.srv) {
    for (const address of await addressesOf(resolver, spec.dns)) {
      const url = origin(address, spec.port!)
      members.set(url, { url, name: null })
    }
    return [...members.values()].sort((a, b) => a.url.localeCompare(b.url))
  }
  const srv = await records(resolver.resolveSrv(spec.dns))
  const targets = [...new Set(srv.map((r) => r.name.toLowerCase().replace(/\.$/, '')))]
  const addresses = new Map(await Promise.all(targets.map(async (t) => [t, await addressesOf(resolver, t)] as const)))
  // A StatefulSet pod's SRV target is `web-0.web.ns.svc.cluster.local`: its first label is the pod's host name.
  const byName = new Map<string, Set<string>>()
  for (const record of srv) {
    const target = record.name.toLowerCase().replace(/\.$/, '')
    // An address as target names nothing.
    const label = isIP(target) === 0 ? target.split('.')[0]! : null
    for (const address of addresses.get(target) ?? []) {
      const url = origin(address, record.port)
      members.set(url, { url, name: label })
      if (label !== null) byName.set(label, (byName.get(label) ?? new Set()).add(url))
    }
  }
  // A name two servers would share (one target with several addresses or ports, two domains' `web-0`) names none.
  for (const member of members.values()) if (member.name !== null && byName.get(member.name)!.size > 1) member.name = null
  return [...members.values()].sort((a, b) => a.url.localeCompare(b.url))
}

/**
 * Keeps one pool's membership in step with DNS. Only servers it added are
 * ever drained or removed: configured servers, and servers an operator
 * added or drained by hand, are left alone.
 */
export class Discovery {
  private readonly resolver: Resolver
  /** The servers this discovery put in the pool, by URL. */
  private readonly members = new Map<string, UpstreamServer>()
  /** Members that left the answer and drain, each with the token of its leaving (a return and a new leave get a new one). */
  private readonly leaving = new Map<UpstreamServer, object>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  /** A failure was reported and no lookup has succeeded since. */
  private failing = false

  constructor (private readonly pool: Pool, private readonly spec: NormalizedDiscover, private readonly listener: DiscoveryListener) {
    this.resolver = new Resolver({ timeout: Math.min(spec.interval, MAX_QUERY_TIMEOUT), tries: 2 })
    if (spec.resolver !== null) this.resolver.setServers(spec.resolver)
  }

  /** Look up now, then every `interval` after each lookup ends (lookups never overlap). */
  start (): void {
    if (this.stopped) return
    lookupMembers(this.resolver, this.spec).then((members) => this.answered(members), (err: unknown) => this.lookupFailed(err))
      .finally(() => {
        if (this.stopped) return
        this.timer = setTimeout(() => this.start(), this.spec.interval)
        this.timer.unref()
      })
  }

  /** Stop looking up; a lookup in flight is cancelled and its answer ignored. Members stay as they are. */
  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.resolver.cancel()
  }

  private answered (members: Member[]): void {
    if (this.stopped) return
    // An empty answer is not applied: one bad answer must not empty a pool (see docs/discovery.md).
    if (members.length === 0) return this.report('empty')
    if (this.failing) {
      this.failing = false
      this.listener.recovered()
    }
    this.apply(members)
  }

  private lookupFailed (err: unknown): void {
    if (this.stopped) return
    const code = (err as { code?: unknown }).code
    this.report(typeof code === 'string' ? code : String(err), err)
  }

  private report (why: string, cause?: unknown): void {
    if (this.failing) return
    this.failing = true
    this.listener.failed(new DiscoveryError(this.pool.name, this.spec.dns, why, this.pool.servers.length, cause === undefined ? undefined : { cause }))
  }

  /** Make the pool's discovered servers the ones of `answer`. */
  private apply (answer: readonly Member[]): void {
    const pool = this.pool
    // Servers an operator removed by hand are forgotten: if DNS still lists them, they join again as new.
    for (const [url, server] of this.members) if (!pool.servers.includes(server)) this.forget(url, server)
    // Leaves first, so that a newcomer may take the name of a server that just left.
    const wanted = new Set(answer.map((m) => m.url))
    for (const [url, server] of this.members) if (!wanted.has(url) && !this.leaving.has(server)) this.leave(url, server)
    for (const member of answer) {
      const known = this.members.get(member.url)
      if (known !== undefined) {
        if (this.leaving.delete(known)) {
          // Through the pool, as an operator's undrain goes: a slowStart ramp applies to it too.
          this.pool.undrain(member.url)
          this.listener.added(known, 'returned')
        }
        continue
      }
      // A configured server, or one added by hand, at the same address stays as it is.
      if (pool.find(member.url) !== undefined) continue
      this.join(member)
    }
  }

  private join (member: Member): void {
    const pool = this.pool
    let name = member.name
    const holder = name === null ? undefined : pool.servers.find((s) => s.name === name)
    // A name held by a server still draining passes to the newcomer; one held by a server that stays is not taken.
    if (holder !== undefined) {
      if (this.leaving.has(holder)) holder.rename(null)
      else name = null
    }
    const server = pool.join({ url: member.url, name, weight: 1, backup: false, down: false, maxConns: 0 })
    this.members.set(member.url, server)
    this.listener.admit(server)
    this.listener.added(server, 'discovered')
  }

  private leave (url: string, server: UpstreamServer): void {
    const token = {}
    this.leaving.set(server, token)
    this.listener.removed(server, 'left-dns')
    // An operator's drain in progress is joined as it is (its own timeout).
    server.startDrain(this.spec.drainTimeout).then(() => {
      if (this.stopped || this.leaving.get(server) !== token) return
      this.forget(url, server)
      this.pool.remove(url)
    }, () => {})
  }

  private forget (url: string, server: UpstreamServer): void {
    this.members.delete(url)
    this.leaving.delete(server)
  }
}
