// What both compatibility checks share: reading their environment and running their
// scenario as numbered steps that stop at the first failure, with the HTTP exchanges of a
// failed step printed for whoever reads the CI log.

/** The value of environment variable `name`; exits with status 2 when it is unset. */
export const env = (name) => {
  const v = process.env[name]
  if (!v) {
    console.error(`compat: environment variable ${name} is required`)
    process.exit(2)
  }
  return v
}

/**
 * Runs `steps` ({name, fn}) in order and exits: 0 when all passed, 1 otherwise. Later steps
 * depend on earlier ones, so the first failure stops the run. `exchanges` is the array the
 * check's fetch appends to; `report(exchange)` prints one exchange of a failed step.
 */
export const runSteps = async ({ steps, exchanges, describeError, report }) => {
  let passed = 0
  let failed = 0
  for (const { name, fn } of steps) {
    const before = exchanges.length
    try {
      await fn()
      passed++
      console.log(`ok   ${name}`)
    } catch (err) {
      failed++
      console.log(`FAIL ${name}`)
      console.log(`     ${describeError(err).split('\n').join('\n     ')}`)
      for (const x of exchanges.slice(before)) report(x)
      break
    }
  }
  const skipped = steps.length - passed - failed
  console.log(`compat: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} not run` : ''}`)
  process.exit(failed || skipped ? 1 : 0)
}
