// Persistent sessions with MQTT.js: subscribe, go away, messages queue,
// reconnect with clean=false gets them in order with session present.
'use strict'
const { args, connect, subscribe, publish, messages, end, run, uid } = require('./common')

run(async () => {
  const version = args.version || 4
  const clientId = uid('nsess')
  const topic = 'node/sess/' + uid('t')
  const extra = version === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}
  const [a, first] = await connect(Object.assign({ protocolVersion: version, clientId, clean: false }, extra))
  await subscribe(a, topic, { qos: 2 })
  await end(a)
  const [pub] = await connect({ protocolVersion: version })
  for (let i = 0; i < 5; i++) await publish(pub, topic, 'q' + i, { qos: 1 + (i % 2) })
  const [b, second] = await connect(Object.assign({ protocolVersion: version, clientId, clean: false }, extra))
  const got = await messages(b, 5)
  await end(pub)
  await end(b)
  return {
    firstSessionPresent: first.sessionPresent,
    secondSessionPresent: second.sessionPresent,
    payloads: got.map((m) => m.payload),
    qos: got.map((m) => m.packet.qos)
  }
})
