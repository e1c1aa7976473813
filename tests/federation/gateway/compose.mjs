// Composes c360's subgraph SDL with the support-notes subgraph into a supergraph.
//
//   node compose.mjs <c360 subgraph SDL file> <c360 URL> <notes URL>
//
// Prints {"errors": [...], "hints": [...], "supergraphSdl": "..." | null} on stdout: judging
// the result is left to the caller (tests/federation/test_gateway.py).

import { readFileSync } from 'node:fs';

import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';

import { typeDefs as notesTypeDefs } from './notes.mjs';

const [c360SdlPath, c360Url, notesUrl] = process.argv.slice(2);
const result = composeServices([
  { name: 'c360', url: c360Url, typeDefs: parse(readFileSync(c360SdlPath, 'utf8')) },
  { name: 'notes', url: notesUrl, typeDefs: notesTypeDefs },
]);
console.log(
  JSON.stringify({
    errors: (result.errors ?? []).map((error) => error.message),
    hints: (result.hints ?? []).map((hint) => hint.toString()),
    supergraphSdl: result.supergraphSdl ?? null,
  }),
);
