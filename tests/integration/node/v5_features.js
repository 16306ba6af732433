// MQTT 5 features through MQTT.js: publish properties passed through,
// subscription identifiers, No Local, Retain As Published, Retain Handling,
// message expiry, and the CONNACK properties.
'use strict'
const { connect, subscribe, publish, messages, untilMarker, beforeMarker, end, run, uid } = require('./common')

run(async () => {
  const base = 'node/v5/' + uid('t')
  const [sub, connack] = await connect({ protocolVersion: 5 })
  const [pub] = await connect({ protocolVersion: 5 })
  const out = { connack: connack.properties || {} }

  // Properties pass-through.
  await subscribe(sub, base + '/props', { qos: 1, properties: { subscriptionIdentifier: 17 } })
  const props = {
    payloadFormatIndicator: true,
    messageExpiryInterval: 300,
    contentType: 'text/plain',
    responseTopic: base + '/reply',
    correlationData: Buffer.from([0, 1, 2, 255]),
    userProperties: { a: '1', b: ['x', 'y'] }
  }
  await publish(pub, base + '/props', 'hello', { qos: 1, properties: props })
  const [m] = await messages(sub, 1)
  const p = m.packet.properties || {}
  out.props = {
    payloadFormatIndicator: p.payloadFormatIndicator,
    messageExpiryInterval: p.messageExpiryInterval,
    contentType: p.contentType,
    responseTopic: p.responseTopic,
    correlationData: p.correlationData ? Array.from(p.correlationData) : null,
    userProperties: p.userProperties,
    subscriptionIdentifier: p.subscriptionIdentifier
  }

  // No Local: own messages are not echoed.
  const nl = base + '/nl'
  await subscribe(sub, nl, { qos: 1, nl: true })
  await subscribe(sub, base + '/marker1', { qos: 1 })
  await publish(sub, nl, 'own', { qos: 1 })
  out.noLocal = (await untilMarker(sub, pub, base + '/marker1')).map((x) => x.payload)

  // Retain As Published and Retain Handling 2.
  await publish(pub, base + '/ret', 'kept', { qos: 1, retain: true })
  await subscribe(sub, base + '/marker2', { qos: 1 })
  const from = sub.received.length
  await subscribe(sub, base + '/ret', { qos: 1, rap: true, rh: 0 })
  await publish(pub, base + '/marker2', 'marker', { qos: 1 })
  const rap = await beforeMarker(sub, base + '/marker2', from)
  out.rapRetained = rap.map((x) => [x.payload, x.packet.retain])
  await subscribe(sub, base + '/marker3', { qos: 1 })
  const from3 = sub.received.length
  await publish(pub, base + '/ret', 'live', { qos: 1, retain: true })
  await publish(pub, base + '/marker3', 'marker', { qos: 1 })
  out.rapLive = (await beforeMarker(sub, base + '/marker3', from3)).map((x) => [x.payload, x.packet.retain])
  const [late] = await connect({ protocolVersion: 5 })
  await subscribe(late, base + '/marker4', { qos: 1 })
  await subscribe(late, base + '/ret', { qos: 1, rh: 2 })
  await publish(pub, base + '/marker4', 'marker', { qos: 1 })
  out.rh2 = (await beforeMarker(late, base + '/marker4')).map((x) => x.payload)

  await end(late)
  await end(pub)
  await end(sub)
  return out
})
