// Compatibility check: the official Commerce Layer JS client (@commercelayer/sdk, pinned in
// package.json) used unchanged against a running pwreset.
//
// The SDK always builds https://{organization}.commercelayer.io/api/...; the only thing we
// inject is a `fetch` (a documented client option) that sends each request to PWRESET_URL
// instead, keeping path and query. Nothing else about the SDK's requests is altered.
//
// Env: PWRESET_URL (e.g. http://127.0.0.1:18181), CL_INTEGRATION_TOKEN,
//      CL_SALES_CHANNEL_TOKEN. Usually run through compat/run.sh.

import assert from 'node:assert/strict'
import { CommerceLayer } from '@commercelayer/sdk/bundle'
import { CommerceLayerStatic } from '@commercelayer/sdk'
import { env, runSteps } from './steps.mjs'


const PWRESET_URL = env('PWRESET_URL').replace(/\/+$/, '')
const INTEGRATION_TOKEN = env('CL_INTEGRATION_TOKEN')
const SALES_CHANNEL_TOKEN = env('CL_SALES_CHANNEL_TOKEN')

// ---- transport: origin rewrite plus a record of the exchanges for failure reports ----

const SECRET_ATTRIBUTES = ['password', 'customer_password', '_reset_password_token', 'reset_password_token']
const exchanges = []

const redactBody = (text) => {
  if (typeof text !== 'string' || text === '') return text
  try {
    const doc = JSON.parse(text)
    const scrub = (res) => {
      const attrs = res?.attributes
      if (attrs) for (const k of SECRET_ATTRIBUTES) if (typeof attrs[k] === 'string') attrs[k] = `<redacted ${attrs[k].length} chars>`
    }
    if (Array.isArray(doc?.data)) doc.data.forEach(scrub)
    else scrub(doc?.data)
    return JSON.stringify(doc)
  } catch {
    return text
  }
}

const redactUrl = (url) => url.replace(/(reset_password_token[^=]*=)[^&]*/g, '$1<redacted>')

const rewritingFetch = async (input, init = {}) => {
  const original = new URL(input instanceof Request ? input.url : String(input))
  const target = `${PWRESET_URL}${original.pathname}${original.search}`
  const headers = { ...(init.headers || {}) }
  for (const k of Object.keys(headers)) if (k.toLowerCase() === 'authorization') headers[k] = 'Bearer <redacted>'
  const record = {
    method: init.method || 'GET',
    sdkUrl: redactUrl(original.href),
    url: redactUrl(target),
    requestHeaders: headers,
    requestBody: redactBody(init.body),
  }
  exchanges.push(record)
  const response = await fetch(target, init)
  record.status = response.status
  record.responseHeaders = Object.fromEntries(response.headers.entries())
  record.responseBody = redactBody(await response.clone().text())
  return response
}

const client = (accessToken) =>
  CommerceLayer({ organization: 'pwreset', accessToken, fetch: rewritingFetch })

const cl = client(INTEGRATION_TOKEN)
const storefront = client(SALES_CHANNEL_TOKEN)

// ---- helpers ----

const describeError = (err) => {
  if (CommerceLayerStatic.isApiError(err)) {
    return `ApiError status=${err.status} statusText=${JSON.stringify(err.statusText)} errors=${JSON.stringify(err.errors)}`
  }
  if (CommerceLayerStatic.isSdkError(err)) {
    return `SdkError type=${err.type} message=${JSON.stringify(err.message)}${err.source ? ` source=${err.source?.stack || err.source}` : ''}`
  }
  return err?.stack || String(err)
}

/** Runs `fn`, which must reject with a Commerce Layer API error of HTTP `status`. */
const expectApiError = async (status, fn) => {
  let thrown
  try {
    await fn()
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown, `expected an API error with status ${status}, but the call succeeded`)
  assert.ok(
    CommerceLayerStatic.isApiError(thrown),
    `expected an ApiError, got: ${describeError(thrown)}`,
  )
  assert.equal(thrown.status, status, `expected status ${status}, got: ${describeError(thrown)}`)
  assert.ok(Array.isArray(thrown.errors) && thrown.errors.length > 0, 'the API error carries no errors[]')
  return thrown
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

const steps = []
const step = (name, fn) => steps.push({ name, fn })

// ---- the scenario ----

const stamp = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`
const email = `compat-${stamp}@example.com`
const state = {}

step('a. integration: customers.create', async () => {
  const customer = await cl.customers.create({ email, password: 'an old password 1' })
  assert.equal(customer.type, 'customers')
  assert.match(customer.id, UUID)
  assert.equal(customer.email, email)
  assert.equal(customer.password, undefined, 'the password must not be echoed back')
  state.customer = customer
})

step('b. integration: customer_password_resets.create (email in another letter case)', async () => {
  const shouted = email.toUpperCase()
  assert.notEqual(shouted, email)
  const reset = await cl.customer_password_resets.create({ customer_email: shouted })
  assert.equal(reset.type, 'customer_password_resets')
  assert.match(reset.id, UUID)
  assert.equal(typeof reset.reset_password_token, 'string')
  assert.equal(reset.reset_password_token.length, 43, 'reset_password_token must be 43 characters')
  assert.match(reset.reset_password_token, /^[A-Za-z0-9_-]{43}$/)
  assert.equal(reset.customer_email.toLowerCase(), email)
  assert.equal(reset.reset_password_at, null)
  assert.match(reset.created_at, ISO_MS)
  assert.match(reset.updated_at, ISO_MS)
  state.reset = reset
  state.token = reset.reset_password_token
})

step('c. integration: customer_password_resets.list filtered by customer_email_eq', async () => {
  const list = await cl.customer_password_resets.list({ filters: { customer_email_eq: email } })
  assert.ok(Array.isArray(list))
  const ids = list.map((r) => r.id)
  assert.ok(ids.includes(state.reset.id), `reset ${state.reset.id} not in list ${JSON.stringify(ids)}`)
  for (const r of list) {
    assert.equal(r.type, 'customer_password_resets')
    assert.equal(r.customer_email.toLowerCase(), email)
    assert.equal(r.reset_password_token, null, 'a listed reset must not show its token')
  }
  assert.equal(list.meta.recordCount, list.length)
  assert.equal(list.meta.pageCount, 1)
  assert.equal(list.first().id, list[0].id)
})

step('d. integration: retrieve with include customer, and the customer relationship', async () => {
  const reset = await cl.customer_password_resets.retrieve(state.reset.id, { include: ['customer'] })
  assert.equal(reset.id, state.reset.id)
  assert.equal(reset.reset_password_token, null, 'a retrieved reset must not show its token')
  assert.ok(reset.customer, 'include=customer did not denormalize a customer')
  assert.equal(reset.customer.type, 'customers')
  assert.equal(reset.customer.id, state.customer.id)
  assert.equal(reset.customer.email, email)

  const related = await cl.customer_password_resets.customer(state.reset.id)
  assert.equal(related.type, 'customers')
  assert.equal(related.id, state.customer.id)
  assert.equal(related.email, email)

  // Sparse fieldsets as the SDK spells them (fields[customers]=email).
  const sparse = await cl.customer_password_resets.customer(state.reset.id, { fields: ['email'] })
  assert.deepEqual(Object.keys(sparse).sort(), ['email', 'id', 'type'])
  assert.equal(sparse.email, email)
})

step('e. sales channel: customer_password_resets.update completes the reset', async () => {
  const done = await storefront.customer_password_resets.update({
    id: state.reset.id,
    customer_password: 'a brand new password 2',
    _reset_password_token: state.token,
  })
  assert.equal(done.id, state.reset.id)
  assert.equal(typeof done.reset_password_at, 'string', 'reset_password_at must be set')
  assert.match(done.reset_password_at, ISO_MS)
  assert.equal(done.reset_password_token, null)
})

step('f. sales channel: the same token again is refused with 422', async () => {
  const err = await expectApiError(422, () =>
    storefront.customer_password_resets.update({
      id: state.reset.id,
      customer_password: 'a brand new password 2',
      _reset_password_token: state.token,
    }),
  )
  assert.equal(err.errors[0].status, '422')
  assert.equal(err.errors[0].source?.pointer, '/data/attributes/_reset_password_token')
})

step('g. sales channel: customer_password_resets.list is refused with 401', async () => {
  const err = await expectApiError(401, () =>
    storefront.customer_password_resets.list({ filters: { customer_email_eq: email } }),
  )
  assert.equal(err.errors[0].status, '401')
})

// ---- run ----

await runSteps({
  steps,
  exchanges,
  describeError,
  report: (x) => {
    console.log(`     -> ${x.method} ${x.url}   (SDK built ${x.sdkUrl})`)
    console.log(`        request headers: ${JSON.stringify(x.requestHeaders)}`)
    if (x.requestBody !== undefined) console.log(`        request body: ${x.requestBody}`)
    console.log(`     <- ${x.status ?? '(no response)'}`)
    if (x.responseHeaders) console.log(`        response headers: ${JSON.stringify(x.responseHeaders)}`)
    if (x.responseBody !== undefined) console.log(`        response body: ${x.responseBody}`)
  },
})
