// QoS 0/1/2 publish/subscribe round trip with MQTT.js at one protocol level:
// 20 messages, checked for order, QoS and payload.
'use strict'
const { args, connect, subscribe, publish, messages, end, run, uid } = require('./common')

run(async () => {
  const version = args.version || 4
  const qos = args.qos || 0
  const topic = 'node/pubsub/' + uid('t')
  const [sub] = await connect({ protocolVersion: version })
  const granted = await subscribe(sub, topic, { qos })
  const [pub] = await connect({ protocolVersion: version })
  for (let i = 0; i < 20; i++) await publish(pub, topic, 'msg-' + i, { qos })
  const got = await messages(sub, 20)
  await end(pub)
  await end(sub)
  return {
    granted: granted.map((g) => g.qos),
    payloads: got.map((m) => m.payload),
    qos: got.map((m) => m.packet.qos),
    retain: got.map((m) => m.packet.retain)
  }
})
