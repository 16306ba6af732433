// Shared subscriptions with MQTT.js: two members of one group split the
// messages between them, each message delivered once.
'use strict'
const { connect, subscribe, publish, beforeMarker, end, run, uid } = require('./common')

run(async () => {
  const base = 'node/shared/' + uid('t')
  const group = uid('g')
  const members = []
  for (let i = 0; i < 2; i++) {
    const [c] = await connect({ protocolVersion: 5 })
    await subscribe(c, '$share/' + group + '/' + base, { qos: 1 })
    await subscribe(c, base + '-marker', { qos: 1 })
    members.push(c)
  }
  const [pub] = await connect({ protocolVersion: 5 })
  for (let i = 0; i < 20; i++) await publish(pub, base, 'm' + i, { qos: 1 })
  await publish(pub, base + '-marker', 'marker', { qos: 1 })
  const shares = []
  for (const c of members) shares.push((await beforeMarker(c, base + '-marker')).map((m) => m.payload))
  for (const c of members) await end(c)
  await end(pub)
  return { shares }
})
