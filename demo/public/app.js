/* global io */
// The demo chat page. `io` comes from /socket.io/socket.io.js, served by an upstream node through sockgate.
'use strict'

const $ = (id) => document.getElementById(id)
const TRANSPORTS = { websocket: ['websocket'], polling: ['polling'], both: ['polling', 'websocket'] }

$('name').value = 'guest-' + Math.random().toString(36).slice(2, 6)

function setFact (id, value) {
  $(id).textContent = value
}

function setState (state) {
  const el = $('state')
  el.textContent = state
  el.dataset.state = state
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
  $('messages').append(li)
  li.scrollIntoView({ block: 'end' })
}

async function loadConfig () {
  try {
    const res = await fetch('/demo/config.json')
    if (res.ok) return await res.json()
  } catch {}
  return {}
}

async function main () {
  const config = await loadConfig()
  const requested = new URLSearchParams(location.search).get('transport')
  const transport = TRANSPORTS[requested] ? requested : (TRANSPORTS[config.transport] ? config.transport : 'both')
  setFact('framework', config.framework || '?')
  if (config.statusPath) {
    $('status-link').hidden = false
    $('status-link').querySelector('a').href = config.statusPath
  }

  const socket = io({ transports: TRANSPORTS[transport] })
  const showTransport = () => {
    const engine = socket.io.engine
    setFact('transport', engine && engine.transport ? engine.transport.name : '–')
  }
  socket.on('connect', () => {
    setState('connected')
    showTransport()
    socket.io.engine.once('upgrade', showTransport)
  })
  socket.on('disconnect', () => {
    setState('disconnected')
    setFact('node', '–')
    setFact('transport', '–')
  })
  socket.on('connect_error', () => setState('disconnected'))
  socket.on('hello', (info) => setFact('node', info.node))
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
