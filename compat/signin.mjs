// Sign-in check: the official @commercelayer/js-auth (pinned in package.json) obtains,
// verifies, refreshes and revokes tokens from a running pwreset, and the official SDK uses
// them; a reset through the API ends the customer's sessions and changes which password
// signs in.
//
// js-auth always talks to https://auth.<domain> (token, revoke, JWKS) and derives the API
// base as https://<organization slug>.<domain>, so pwreset runs with
// PWRESET_ISSUER=https://auth.<domain>. The only thing we change is the transport: a global
// `fetch` that sends requests for *.<domain> to PWRESET_URL, keeping path, query, method,
// headers and body (js-auth has no fetch option; the SDK gets the same fetch as an option).
//
// Env: PWRESET_URL, CL_DOMAIN, CL_INTEGRATION_ID, CL_INTEGRATION_SECRET,
//      CL_SALES_CHANNEL_ID. Usually run through compat/run.sh.

import assert from 'node:assert/strict'
import { authenticate, revoke, jwtVerify, jwtDecode, getCoreApiBaseEndpoint } from '@commercelayer/js-auth'
import { CommerceLayer } from '@commercelayer/sdk/bundle'
import { CommerceLayerStatic } from '@commercelayer/sdk'
import { env, runSteps } from './steps.mjs'


const PWRESET_URL = env('PWRESET_URL').replace(/\/+$/, '')
const DOMAIN = env('CL_DOMAIN')
const INTEGRATION = { clientId: env('CL_INTEGRATION_ID'), clientSecret: env('CL_INTEGRATION_SECRET') }
const SALES_CHANNEL = { clientId: env('CL_SALES_CHANNEL_ID') }

// ---- transport: *.DOMAIN goes to the local pwreset; a log of exchanges for failures ----

const exchanges = []
const realFetch = globalThis.fetch
const localFetch = async (input, init = {}) => {
  const original = new URL(input instanceof Request ? input.url : String(input))
  if (!original.hostname.endsWith(`.${DOMAIN}`)) {
    throw new Error(`compat: refusing a request outside the test domain: ${original.href}`)
  }
  const target = `${PWRESET_URL}${original.pathname}${original.search}`
  const record = { method: init.method || 'GET', url: original.href }
  exchanges.push(record)
  const response = await realFetch(target, init)
  record.status = response.status
  record.cacheControl = response.headers.get('cache-control')
  return response
}
globalThis.fetch = localFetch

const sdk = (accessToken) => CommerceLayer({ organization: 'pwreset', domain: DOMAIN, accessToken, fetch: localFetch })

const describeError = (err) => {
  if (CommerceLayerStatic.isApiError(err)) {
    return `ApiError status=${err.status} errors=${JSON.stringify(err.errors)}`
  }
  return err?.stack || String(err)
}

const expectApiError = async (status, code, fn) => {
  let thrown
  try {
    await fn()
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown, `expected an API error ${status}, but the call succeeded`)
  assert.ok(CommerceLayerStatic.isApiError(thrown), `expected an ApiError, got: ${describeError(thrown)}`)
  assert.equal(thrown.status, status, describeError(thrown))
  assert.equal(thrown.errors[0].code, code, describeError(thrown))
}

/** An authenticate() answer that must be an error with this title and numeric status. */
const assertGrantError = (answer, title, status) => {
  assert.ok(Array.isArray(answer.errors), `expected errors, got ${JSON.stringify(answer)}`)
  assert.equal(answer.errors[0].title, title, JSON.stringify(answer.errors))
  assert.equal(answer.errors[0].status, status, JSON.stringify(answer.errors))
  assert.equal(answer.accessToken, undefined)
}

/** The last exchange with the token endpoint, as seen on the wire. */
const lastTokenExchange = () => [...exchanges].reverse().find((x) => x.url.endsWith('/oauth/token'))

const steps = []
const step = (name, fn) => steps.push({ name, fn })

const stamp = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`
const email = `signin-${stamp}@example.com`
const OLD_PASSWORD = 'the first password 1'
const NEW_PASSWORD = 'the second password 2'
const state = {}

step('a. client_credentials (integration): a verified RS512 token naming this deployment', async () => {
  const auth = await authenticate('client_credentials', { ...INTEGRATION, domain: DOMAIN })
  assert.equal(auth.errors, undefined, JSON.stringify(auth.errors))
  assert.equal(auth.tokenType, 'bearer')
  assert.equal(auth.expiresIn, 7200)
  assert.equal(typeof auth.scope, 'string')
  assert.equal(typeof auth.createdAt, 'number')
  assert.equal(auth.refreshToken, undefined, 'client credentials grants carry no refresh token')
  assert.equal(lastTokenExchange().cacheControl, 'no-store')
  const verified = await jwtVerify(auth.accessToken) // fetches https://auth.DOMAIN/.well-known/jwks.json
  assert.equal(verified.header.alg, 'RS512')
  assert.equal(typeof verified.header.kid, 'string')
  assert.equal(verified.payload.application.kind, 'integration')
  assert.equal(verified.payload.iss, `https://auth.${DOMAIN}`)
  assert.equal(verified.payload.exp - verified.payload.iat, 7200)
  assert.equal(getCoreApiBaseEndpoint(auth.accessToken), `https://pwreset.${DOMAIN}`)
  state.integration = sdk(auth.accessToken)
})

step('b. the SDK uses that token: customers.create', async () => {
  const customer = await state.integration.customers.create({ email, password: OLD_PASSWORD })
  assert.equal(customer.email, email)
  state.customer = customer
})

step('c. password grant (sales channel): the customer signs in', async () => {
  const auth = await authenticate('password', { ...SALES_CHANNEL, domain: DOMAIN, username: email, password: OLD_PASSWORD })
  assert.equal(auth.errors, undefined, JSON.stringify(auth.errors))
  assert.equal(auth.ownerId, state.customer.id)
  assert.equal(auth.ownerType, 'customer')
  assert.match(auth.refreshToken, /^[A-Za-z0-9_-]{43,}$/)
  const { payload } = jwtDecode(auth.accessToken)
  assert.deepEqual(payload.owner, { id: state.customer.id, type: 'Customer' })
  assert.equal(payload.application.kind, 'sales_channel')
  assert.equal(payload.application.public, true)
  state.first = auth
})

step('d. a customer token reads its own customer and nothing else', async () => {
  const mine = sdk(state.first.accessToken)
  const me = await mine.customers.retrieve(state.customer.id)
  assert.equal(me.email, email)
  await expectApiError(401, 'UNAUTHORIZED', () => mine.customer_password_resets.list())
})

step('e. a wrong password and an unknown address get the same answer', async () => {
  const wrong = await authenticate('password', { ...SALES_CHANNEL, domain: DOMAIN, username: email, password: 'not the password' })
  const unknown = await authenticate('password', { ...SALES_CHANNEL, domain: DOMAIN, username: `nobody-${stamp}@example.com`, password: 'not the password' })
  assertGrantError(wrong, 'invalid_grant', 400)
  assert.deepEqual(unknown, wrong)
})

step('f. refresh_token grant rotates the refresh token', async () => {
  const auth = await authenticate('refresh_token', { ...SALES_CHANNEL, domain: DOMAIN, refreshToken: state.first.refreshToken })
  assert.equal(auth.errors, undefined, JSON.stringify(auth.errors))
  assert.notEqual(auth.refreshToken, state.first.refreshToken)
  assert.equal(auth.ownerId, state.customer.id)
  state.refreshed = auth
})

step('g. logout: revoke the access token; it and its refresh token stop working', async () => {
  const answer = await revoke({ ...SALES_CHANNEL, token: state.refreshed.accessToken })
  assert.deepEqual(answer, {})
  await expectApiError(401, 'INVALID_TOKEN', () => sdk(state.refreshed.accessToken).customers.retrieve(state.customer.id))
  const again = await authenticate('refresh_token', { ...SALES_CHANNEL, domain: DOMAIN, refreshToken: state.refreshed.refreshToken })
  assertGrantError(again, 'invalid_grant', 400)
})

step('h. sign in again, then a reset through the API (integration creates, storefront completes)', async () => {
  state.second = await authenticate('password', { ...SALES_CHANNEL, domain: DOMAIN, username: email, password: OLD_PASSWORD })
  assert.equal(state.second.errors, undefined, JSON.stringify(state.second.errors))
  const reset = await state.integration.customer_password_resets.create({ customer_email: email })
  const storefrontAuth = await authenticate('client_credentials', { ...SALES_CHANNEL, domain: DOMAIN })
  assert.equal(storefrontAuth.errors, undefined, JSON.stringify(storefrontAuth.errors))
  const done = await sdk(storefrontAuth.accessToken).customer_password_resets.update({
    id: reset.id,
    customer_password: NEW_PASSWORD,
    _reset_password_token: reset.reset_password_token,
  })
  assert.equal(typeof done.reset_password_at, 'string')
  state.reset = reset
})

step('i. after the reset nothing from before works: access token, refresh token, old password', async () => {
  await expectApiError(401, 'INVALID_TOKEN', () => sdk(state.second.accessToken).customers.retrieve(state.customer.id))
  const refreshed = await authenticate('refresh_token', { ...SALES_CHANNEL, domain: DOMAIN, refreshToken: state.second.refreshToken })
  assertGrantError(refreshed, 'invalid_grant', 400)
  const old = await authenticate('password', { ...SALES_CHANNEL, domain: DOMAIN, username: email, password: OLD_PASSWORD })
  assertGrantError(old, 'invalid_grant', 400)
})

step('j. the new password signs in, and the reset records the sessions it ended', async () => {
  const auth = await authenticate('password', { ...SALES_CHANNEL, domain: DOMAIN, username: email, password: NEW_PASSWORD })
  assert.equal(auth.errors, undefined, JSON.stringify(auth.errors))
  const me = await sdk(auth.accessToken).customers.retrieve(state.customer.id)
  assert.equal(me.id, state.customer.id)
  const response = await localFetch(`https://pwreset.${DOMAIN}/api/customer_password_resets/${state.reset.id}/events`, {
    headers: { Accept: 'application/vnd.api+json', Authorization: `Bearer ${(await authenticate('client_credentials', { ...INTEGRATION, domain: DOMAIN })).accessToken}` },
  })
  assert.equal(response.status, 200)
  const events = (await response.json()).data.map((e) => e.attributes)
  const ended = events.find((e) => e.name === 'sessions_revoked')
  assert.ok(ended, `no sessions_revoked event in ${JSON.stringify(events.map((e) => e.name))}`)
  assert.equal(ended.reason, '1', 'one live session (the second sign-in) was ended')
})

step('k. an unknown client is refused as Commerce Layer does', async () => {
  const answer = await authenticate('client_credentials', { clientId: 'no-such-client', clientSecret: 'x', domain: DOMAIN })
  assertGrantError(answer, 'invalid_client', 401)
  assert.equal(answer.errors[0].code, 'UNAUTHORIZED')
})

await runSteps({
  steps,
  exchanges,
  describeError,
  report: (x) => console.log(`     -> ${x.method} ${x.url} <- ${x.status ?? '(no response)'}`),
})
