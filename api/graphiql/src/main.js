// c360's GraphiQL: GraphiQL 5 with the explorer plugin, every asset served by c360 itself.
//
// The page (api/ide.py) gives the configuration as JSON in #c360-graphiql: the endpoint, the
// ready tabs (the README's example documents) and, in development only, the headers the
// headers editor starts with. Queries and mutations go over HTTP with the editor's headers;
// subscriptions over graphql-transport-ws, with the editor's Authorization as the
// connection_init payload (what c360's WebSocket endpoint reads), one socket per credential.
import { explorerPlugin } from '@graphiql/plugin-explorer';
import '@graphiql/plugin-explorer/style.css';
import { GraphiQL } from 'graphiql';
import 'graphiql/style.css';
import { getOperationAST, parse } from 'graphql';
import { createClient } from 'graphql-ws';
import { createElement } from 'react';
import { createRoot } from 'react-dom/client';

// Monaco's workers, bundled beside this file (build.mjs), never fetched from elsewhere.
const WORKERS = { json: 'json.worker.js', graphql: 'graphql.worker.js' };
globalThis.MonacoEnvironment = {
  getWorker(_workerId, label) {
    const file = WORKERS[label] ?? 'editor.worker.js';
    return new Worker(new URL(file, import.meta.url), { type: 'module' });
  },
};

const config = JSON.parse(document.getElementById('c360-graphiql').textContent);
const endpoint = new URL(config.endpoint, window.location.href);
const socketUrl = new URL(endpoint);
socketUrl.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:';

function authorization(headers) {
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() === 'authorization') return String(value);
  }
  return undefined;
}

// The request as meant: GraphiQL 5.4.0 can send the previous tab's operation name after a tab
// switch; a document of one operation runs that operation whatever name came with it.
function settled(params) {
  let document;
  try {
    document = parse(params.query);
  } catch {
    return { params, subscription: false }; // the server gives the syntax error
  }
  let operation = getOperationAST(document, params.operationName);
  if (!operation && params.operationName) {
    operation = getOperationAST(document);
    if (operation) params = { ...params, operationName: operation.name?.value ?? null };
  }
  return { params, subscription: operation?.operation === 'subscription' };
}

const sockets = new Map();
function socketFor(credential) {
  const key = credential ?? '';
  if (!sockets.has(key)) {
    sockets.set(
      key,
      createClient({
        url: socketUrl.href,
        connectionParams: credential ? { authorization: credential } : {},
        lazy: true,
        retryAttempts: 0,
      }),
    );
  }
  return sockets.get(key);
}

function fetcher(asked, options) {
  const headers = options?.headers ?? {};
  const { params, subscription } = settled(asked);
  if (subscription) {
    return socketFor(authorization(headers)).iterate(params);
  }
  return fetch(endpoint, {
    method: 'POST',
    headers: {
      accept: 'application/graphql-response+json, application/json',
      'content-type': 'application/json',
      ...headers,
    },
    body: JSON.stringify(params),
  }).then((response) => response.json());
}

const explorer = explorerPlugin();
createRoot(document.getElementById('graphiql')).render(
  createElement(GraphiQL, {
    fetcher,
    plugins: [explorer],
    defaultEditorToolsVisibility: 'headers',
    defaultHeaders: config.headers ?? undefined,
    defaultTabs: config.tabs,
    // GraphiQL starts the variables editor from this, not from the first tab (5.4.0).
    initialVariables: config.tabs[0]?.variables ?? undefined,
    shouldPersistHeaders: false,
  }),
);
