/* global io */
// The demo chat page. `io` comes from /socket.io/socket.io.js, served by an upstream node through sockgate.
'use strict'

const $ = (id) => document.getElementById(id)
const TRANSPORTS = { websocket: ['websocket'], polling: ['polling'], both: ['polling', 'websocket'] }
const ACTIONS = ['stop', 'start', 'drain']
/** How often the node panel asks the app what the nodes are doing and what the gateway sees. */
const NODES_REFRESH_MS = 1000
/** Socket.IO's disconnect reasons, in words. */
const REASONS = {
  'transport close': 'its connection was closed',
  'transport error': 'its connection failed',
  'ping timeout': 'it stopped answering pings',
  'io server disconnect': 'the node ended the session',
}

$('name').value = 'guest-' + Math.random().toString(36).slice(2, 6)

function setFact (id, value) {
  $(id).textContent = value
}

function setState (state, text = state) {
  const el = $('state')
  el.textContent = text
  el.dataset.state = state
}

function append (li) {
  $('messages').append(li)
  li.scrollIntoView({ block: 'end' })
}

function addMessage (msg) {
  const li = document.createElement('li')
  const from = document.createElement('strong')
  from.textContent = msg.from
  const text = document.createElement('span')
  text.className = 'text'
  text.textContent = msg.text
  const via = document.createElement('small')
  via.textContent = 'via ' + msg.node
  li.append(from, text, via)
  append(li)
}

/** A line in the chat saying what just happened to the connection or the nodes. */
function note (text) {
  const li = document.createElement('li')
  li.className = 'note'
  li.textContent = text
  append(li)
}

async function loadConfig () {
  try {
    const res = await fetch('/demo/config.json')
    if (res.ok) return await res.json()
  } catch {}
  return {}
}

// ---------------------------------------------------------------------------------------------
// The node panel: one card per node, built once and updated in place (so a click never lands on
// a button that was just replaced).

const cards = new Map()
let currentNode = null

function createCard (info) {
  const li = document.createElement('li')
  li.className = 'node'
  li.dataset.node = info.name
  li.innerHTML =
    '<div class="node-head"><strong></strong><span class="here">you are here</span></div>' +
    '<div class="node-url"></div>' +
    '<dl class="node-facts">' +
    '<div><dt>node</dt><dd class="process"></dd></div>' +
    '<div><dt>gateway sees</dt><dd><span class="state"></span> <small class="reason"></small></dd></div>' +
    '<div><dt>tunnels</dt><dd class="tunnels"></dd></div>' +
    '</dl><div class="node-actions"></div>'
  li.querySelector('strong').textContent = info.name
  li.querySelector('.node-url').textContent = info.url.replace(/^http:\/\//, '')
  const card = { li, info, busy: false, buttons: {} }
  for (const action of ACTIONS) {
    const button = document.createElement('button')
    button.type = 'button'
    button.className = 'control control-' + action
    button.textContent = action[0].toUpperCase() + action.slice(1)
    button.setAttribute('aria-label', `${button.textContent} ${info.name}`)
    button.addEventListener('click', () => control(card, action))
    card.buttons[action] = button
    li.querySelector('.node-actions').append(button)
  }
  $('node-list').append(li)
  cards.set(info.name, card)
  return card
}

function updateCard (card, info) {
  const before = card.info.gateway
  card.info = info
  const { li, buttons } = card
  li.dataset.listening = String(info.listening)
  li.dataset.here = String(info.name === currentNode)
  li.querySelector('.process').textContent = info.listening ? 'running' : 'stopped'
  const state = li.querySelector('.state')
  state.textContent = info.gateway.state
  state.className = 'state state-' + info.gateway.state
  li.querySelector('.reason').textContent = info.gateway.state === 'down' && info.gateway.reason ? info.gateway.reason : ''
  li.querySelector('.tunnels').textContent = String(info.gateway.activeTunnels)
  buttons.stop.disabled = card.busy || !info.listening
  buttons.drain.disabled = card.busy || !info.listening || info.drained
  buttons.start.disabled = card.busy || (info.listening && !info.drained)
  if (before && before.state !== info.gateway.state) {
    const why = info.gateway.state === 'down' && info.gateway.reason ? ` (${info.gateway.reason})` : ''
    note(`The gateway now sees ${info.name} ${info.gateway.state}${why}.`)
  }
}

function showNodes (list) {
  for (const info of list) {
    const card = cards.get(info.name)
    if (card === undefined) updateCard(createCard(info), info)
    else updateCard(card, info)
  }
}

async function refreshNodes () {
  try {
    const res = await fetch('/demo/nodes')
    if (res.ok) showNodes(await res.json())
  } catch {} // the demo is stopping or restarting; the next round tries again
}

const DONE = {
  stop: (name) => `${name} stopped: its port is closed and its connections are cut.`,
  start: (name) => `${name} is running again on the same port; the gateway sends it new sessions once its health checks pass.`,
  drain: (name, config) => `${name} is draining: the gateway sends it no new sessions and ends its WebSocket tunnels within ${config.drainTimeoutMs / 1000} s.`,
}

let config = {}

async function control (card, action) {
  const name = card.info.name
  // Asked now: stopping this page's node disconnects the page before the answer arrives.
  const here = name === currentNode
  let info = card.info
  card.busy = true
  updateCard(card, info)
  try {
    const res = await fetch(`/demo/nodes/${encodeURIComponent(name)}/${action}`, { method: 'POST' })
    const body = await res.json().catch(() => ({}))
    if (res.ok) {
      note(DONE[action](name, config) + (here && action === 'stop' ? ' This page was on it.' : ''))
      info = body
    } else {
      note(`Could not ${action} ${name}: ${body.error || res.status}.`)
    }
  } catch (err) {
    note(`Could not ${action} ${name}: ${err.message}.`)
  } finally {
    card.busy = false
    updateCard(card, info)
  }
}

function markHere () {
  for (const card of cards.values()) card.li.dataset.here = String(card.info.name === currentNode)
}

// ---------------------------------------------------------------------------------------------

async function main () {
  config = await loadConfig()
  const requested = new URLSearchParams(location.search).get('transport')
  const transport = TRANSPORTS[requested] ? requested : (TRANSPORTS[config.transport] ? config.transport : 'both')
  setFact('framework', config.framework || '?')
  if (config.drainTimeoutMs) setFact('drain-seconds', String(config.drainTimeoutMs / 1000))
  if (config.statusPath) {
    $('status-link').hidden = false
    $('status-link').querySelector('a').href = config.statusPath
  }
  refreshNodes()
  setInterval(refreshNodes, NODES_REFRESH_MS)

  // Reconnection is Socket.IO's own (its defaults); the page only says what happened.
  const socket = io({ transports: TRANSPORTS[transport] })
  let lost = null
  const showTransport = () => {
    const engine = socket.io.engine
    setFact('transport', engine && engine.transport ? engine.transport.name : '–')
  }
  socket.on('connect', () => {
    setState('connected')
    showTransport()
    socket.io.engine.once('upgrade', showTransport)
  })
  socket.on('hello', (info) => {
    currentNode = info.node
    setFact('node', info.node)
    markHere()
    if (lost === null) {
      note(`Connected to ${info.node} through the gateway.`)
    } else {
      const seconds = ((Date.now() - lost.at) / 1000).toFixed(1)
      const moved = lost.node !== null && lost.node !== info.node ? `, having been on ${lost.node}` : ''
      note(`Reconnected through ${info.node} after ${seconds} s${moved}. Messages go through as before.`)
      lost = null
    }
  })
  socket.on('disconnect', (reason) => {
    lost = { node: currentNode, at: Date.now() }
    currentNode = null
    markHere()
    setFact('node', '–')
    setFact('transport', '–')
    const what = `Lost ${lost.node || 'the node'}: ${REASONS[reason] || reason} (${reason}).`
    if (socket.active) {
      setState('reconnecting')
      note(`${what} The client reconnects by itself, and the gateway sends it to a node that is up.`)
    } else {
      setState('disconnected')
      note(`${what} The client does not reconnect after that; reload the page to start again.`)
    }
  })
  socket.io.on('reconnect_attempt', (attempt) => setState('reconnecting', `reconnecting (attempt ${attempt})`))
  socket.on('connect_error', () => { if (!socket.active) setState('disconnected') })
  socket.on('chat', addMessage)

  $('send-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const text = $('text').value.trim()
    if (text === '') return
    socket.emit('chat', { from: $('name').value.trim(), text })
    $('text').value = ''
    $('text').focus()
  })
}

main()
