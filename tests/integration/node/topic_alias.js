// Topic aliases both ways with MQTT.js: the publisher assigns aliases
// automatically within the server's Topic Alias Maximum; the subscriber
// announces its own maximum and resolves any alias the server uses.
'use strict'
const { connect, subscribe, publish, messages, end, run, uid } = require('./common')

run(async () => {
  const base = 'node/alias/' + uid('t')
  const [sub] = await connect({ protocolVersion: 5, topicAliasMaximum: 4 })
  let aliasedIn = 0
  let aliasOnly = 0
  let maxAliasIn = 0
  sub.on('packetreceive', (packet) => {
    if (packet.cmd === 'publish' && packet.properties && packet.properties.topicAlias) {
      aliasedIn++
      maxAliasIn = Math.max(maxAliasIn, packet.properties.topicAlias)
      if (packet.topic.length === 0) aliasOnly++
    }
  })
  await subscribe(sub, base + '/#', { qos: 1 })
  const [pub, connack] = await connect({ protocolVersion: 5, autoAssignTopicAlias: true })
  let aliasedOut = 0
  pub.on('packetsend', (packet) => {
    if (packet.cmd === 'publish' && packet.properties && packet.properties.topicAlias) aliasedOut++
  })
  const topics = []
  for (let i = 0; i < 12; i++) topics.push(base + '/topic/' + (i % 3))
  for (let i = 0; i < topics.length; i++) await publish(pub, topics[i], 'm' + i, { qos: 1 })
  const got = await messages(sub, topics.length)
  await end(pub)
  await end(sub)
  return {
    serverTopicAliasMaximum: (connack.properties || {}).topicAliasMaximum || 0,
    sent: topics,
    received: got.map((m) => m.topic),
    payloads: got.map((m) => m.payload),
    aliasedOut,
    aliasedIn,
    aliasOnly,
    maxAliasIn,
    subscriberError: sub.lastError ? String(sub.lastError) : null
  }
})
