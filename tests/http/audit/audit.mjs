// Runs the graphql-http server audit suite against one GraphQL endpoint and prints the results.
//
//   node audit.mjs http://127.0.0.1:8000/graphql
//
// Prints a JSON array on stdout, one entry per audit: {id, name, status, reason?, response?}.
// `name` starts with the requirement level (MUST, SHOULD or MAY) and `status` is "ok", or what
// graphql-http calls a failure at that level ("error" for MUST, "warn" for SHOULD, "notice" for
// MAY). Judging the results is left to the caller (tests/http/test_graphql_http_audit.py).
// Exits non-zero, with the cause on stderr, only when the audit itself could not run (bad
// arguments, the server unreachable or hanging).

import { serverAudits } from 'graphql-http';

// A server that never answers must fail the run, not hang it: fetch has no timeout of its own.
const REQUEST_TIMEOUT_MS = 15_000;
// Enough of a failing response's body to see why, without flooding the test report.
const BODY_EXCERPT_CHARS = 500;

function timedFetch(input, init = {}) {
  return fetch(input, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

/** What a failing audit's response looked like; its body may already have been read. */
async function describeResponse(response) {
  if (!response) return undefined;
  let body;
  try {
    body = (await response.text()).slice(0, BODY_EXCERPT_CHARS);
  } catch {
    body = undefined;
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  };
}

async function main() {
  const url = process.argv[2];
  if (!url) {
    console.error('usage: node audit.mjs <graphql endpoint URL>');
    return 2;
  }
  const results = [];
  // One at a time rather than auditServer's Promise.all: the report is in the suite's order and
  // a failure cannot be caused by the audits racing one another.
  for (const audit of serverAudits({ url, fetchFn: timedFetch })) {
    let result;
    try {
      result = await audit.fn();
    } catch (error) {
      // graphql-http throws only when an audit could not be carried out at all.
      console.error(`audit ${audit.id} (${audit.name}) could not run: ${error?.stack ?? error}`);
      return 1;
    }
    const entry = { id: result.id, name: result.name, status: result.status };
    if (result.status !== 'ok') {
      entry.reason = result.reason;
      entry.response = await describeResponse(result.response);
    }
    results.push(entry);
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  return 0;
}

process.exitCode = await main();
