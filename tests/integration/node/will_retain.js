// Wills and retained messages with MQTT.js: a will on an abrupt close, none
// on a clean end; retained set, replaced and cleared.
'use strict'
const { args, connect, subscribe, publish, messages, untilMarker, beforeMarker, end, run, uid } = require('./common')

run(async () => {
  const version = args.version || 4
  const base = 'node/wr/' + uid('t')
  const [watch] = await connect({ protocolVersion: version })
  await subscribe(watch, base + '/will/#', { qos: 1 })
  const [dying] = await connect({ protocolVersion: version,
    will: { topic: base + '/will/a', payload: 'gone', qos: 1, retain: false } })
  dying.stream.destroy()          // no DISCONNECT
  const [w] = await messages(watch, 1)
  const [polite] = await connect({ protocolVersion: version,
    will: { topic: base + '/will/b', payload: 'never', qos: 1, retain: false } })
  await end(polite)
  const [pub] = await connect({ protocolVersion: version })
  await subscribe(watch, base + '/m', { qos: 1 })
  const afterPolite = await untilMarker(watch, pub, base + '/m')

  await publish(pub, base + '/r/1', 'first', { qos: 1, retain: true })
  await publish(pub, base + '/r/1', 'second', { qos: 1, retain: true })
  await publish(pub, base + '/r/2', 'doomed', { qos: 1, retain: true })
  await publish(pub, base + '/r/2', '', { qos: 1, retain: true })
  const [late] = await connect({ protocolVersion: version })
  await subscribe(late, base + '/m2', { qos: 1 })
  await subscribe(late, base + '/r/#', { qos: 1 })
  await publish(pub, base + '/m2', 'marker', { qos: 1 })
  const retained = await beforeMarker(late, base + '/m2')
  await end(late)
  await end(pub)
  await end(watch)
  return {
    will: [w.topic.slice(base.length), w.payload],
    afterPolite: afterPolite.map((m) => m.payload),
    retained: retained.map((m) => [m.topic.slice(base.length), m.payload, m.packet.retain])
  }
})
