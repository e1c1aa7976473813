// The graphql-js floor: each workload's recorded requests executed in-process with graphql-js
// `execute` over c360's recorded answers, for the given seconds each (no HTTP, no I/O).
//
//   node floor.mjs <schema.subgraph.graphql> <recordings.json> <seconds>
//
// Prints one JSON object: {"<workload>": operations per second}.

import { execute, parse } from 'graphql';

import { loadRecordings, loadSchema } from './answers.mjs';

const [schemaPath, recordingsPath, seconds] = process.argv.slice(2);
const schema = loadSchema(schemaPath);
const floors = {};
for (const [workload, { query, requests }] of Object.entries(loadRecordings(recordingsPath))) {
  // Parsed once, as c360's floor does (bench/floor.py).
  const document = parse(query);
  // What is timed must be the real work: each request first gives exactly c360's data.
  for (const { variables, data } of requests) {
    const result = await execute({
      schema,
      document,
      rootValue: data,
      contextValue: {},
      variableValues: variables ?? undefined,
    });
    if (result.errors) throw new Error(`${workload}: ${result.errors[0].message}`);
    if (JSON.stringify(result.data) !== JSON.stringify(data)) {
      throw new Error(`${workload}: graphql-js did not give c360's answer`);
    }
  }
  let operations = 0;
  const started = performance.now();
  const deadline = started + Number(seconds) * 1000;
  while (performance.now() < deadline) {
    for (const { variables, data } of requests) {
      let result = execute({
        schema,
        document,
        rootValue: data,
        contextValue: {},
        variableValues: variables ?? undefined,
      });
      // Every resolver is synchronous, so the result is too: awaiting it would only add a tick.
      if (result instanceof Promise) result = await result;
      if (result.errors) throw new Error(`${workload}: ${result.errors[0].message}`);
      operations += 1;
    }
  }
  floors[workload] = (operations * 1000) / (performance.now() - started);
}
console.log(JSON.stringify(floors));
