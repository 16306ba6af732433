// MQTT.js over WebSocket (args.transport ws or wss) beside an MQTT.js client
// over plain tcp (args.tcp_port): each subscribes at args.qos and receives 10
// messages the other publishes, so every message crosses between the two
// transports, both ways.
'use strict'
const { args, connect, subscribe, publish, messages, end, run, uid } = require('./common')

run(async () => {
  const version = args.version || 4
  const qos = args.qos || 0
  const base = 'node/ws/' + uid('t')
  const [ws] = await connect({ protocolVersion: version })
  const [tcp] = await connect({ protocolVersion: version, protocol: 'mqtt', port: args.tcp_port, ca: undefined })
  await subscribe(ws, base + '/to-ws', { qos })
  await subscribe(tcp, base + '/to-tcp', { qos })
  for (let i = 0; i < 10; i++) {
    await publish(tcp, base + '/to-ws', 'down-' + i, { qos })
    await publish(ws, base + '/to-tcp', 'up-' + i, { qos })
  }
  const toWs = await messages(ws, 10)
  const toTcp = await messages(tcp, 10)
  await end(ws)
  await end(tcp)
  return {
    toWs: toWs.map((m) => m.payload),
    toTcp: toTcp.map((m) => m.payload),
    qosWs: toWs.map((m) => m.packet.qos),
    qosTcp: toTcp.map((m) => m.packet.qos)
  }
})
