// The bench's peer: Apollo Server 5 serving c360's schema with c360's recorded answers from
// memory, on 127.0.0.1:<port>.
//
//   node server.mjs <schema.subgraph.graphql> <recordings.json> <port>
//
// Prints `LISTENING {"url": ...}` once it listens; runs until killed. Credentials are ignored.

import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';

import { answersByRequest, loadRecordings, loadSchema, requestKey } from './answers.mjs';

const [schemaPath, recordingsPath, port] = process.argv.slice(2);
const answers = answersByRequest(loadRecordings(recordingsPath));

const server = new ApolloServer({
  schema: loadSchema(schemaPath),
  plugins: [
    // The subgraph's `_service` field would turn on federated tracing, which no request asks for.
    ApolloServerPluginInlineTraceDisabled(),
    {
      async requestDidStart({ request, contextValue }) {
        contextValue.answer = answers.get(requestKey(request.query, request.variables));
      },
    },
  ],
});
const { url } = await startStandaloneServer(server, {
  listen: { host: '127.0.0.1', port: Number(port) },
});
console.log(`LISTENING ${JSON.stringify({ url })}`);
