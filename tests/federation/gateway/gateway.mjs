// Serves a supergraph through Apollo Gateway on a free port of 127.0.0.1.
//
//   node gateway.mjs <supergraph SDL file>
//
// The subgraph URLs come from the supergraph. Each request's Authorization header is passed on
// to every subgraph, so c360 sees the caller's own credential (a service key or token).
// Prints `LISTENING {"url": "http://127.0.0.1:<port>/"}` once it listens; runs until killed.

import { readFileSync } from 'node:fs';

import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';

class ForwardingDataSource extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context.authorization) {
      request.http.headers.set('authorization', context.authorization);
    }
  }
}

const supergraphSdl = readFileSync(process.argv[2], 'utf8');
const gateway = new ApolloGateway({
  supergraphSdl,
  buildService: ({ url }) => new ForwardingDataSource({ url }),
});
const server = new ApolloServer({ gateway });
const { url } = await startStandaloneServer(server, {
  listen: { host: '127.0.0.1', port: 0 },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
console.log(`LISTENING ${JSON.stringify({ url })}`);
