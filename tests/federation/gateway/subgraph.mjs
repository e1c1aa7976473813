// Serves the support-notes subgraph on a free port of 127.0.0.1.
//
//   node subgraph.mjs '[{"id": "n1", "text": "Called about a parcel", "customerId": "7"}]'
//
// Prints `LISTENING {"url": "http://127.0.0.1:<port>/"}` once it listens; runs until killed.

import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';

import { createResolvers, typeDefs } from './notes.mjs';

const notes = JSON.parse(process.argv[2] ?? '[]');
const server = new ApolloServer({
  schema: buildSubgraphSchema({ typeDefs, resolvers: createResolvers(notes) }),
  // Traces are for Apollo's managed federation, which this test does not use.
  plugins: [ApolloServerPluginInlineTraceDisabled()],
});
const { url } = await startStandaloneServer(server, { listen: { host: '127.0.0.1', port: 0 } });
console.log(`LISTENING ${JSON.stringify({ url })}`);
