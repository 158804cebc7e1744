// aedes broker for tests/probe.rs: MQTT over TCP on argv[2] and over WebSocket on argv[3]
// (any path), both on 127.0.0.1. Prints "ready" once both listen; stops on SIGTERM.
import { createServer } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { Aedes } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'

const [tcpPort, wsPort] = process.argv.slice(2).map(Number)
const aedes = await Aedes.createBroker()
const tcp = createServer(aedes.handle)
const http = createHttpServer()
const wss = new WebSocketServer({ server: http })
wss.on('connection', (websocket, req) => aedes.handle(createWebSocketStream(websocket), req))
await new Promise((resolve) => tcp.listen(tcpPort, '127.0.0.1', resolve))
await new Promise((resolve) => http.listen(wsPort, '127.0.0.1', resolve))
console.log('ready')
process.on('SIGTERM', () => process.exit(0))
