// c360's schema with every field answering from c360's recorded answers: shared by the peer
// server (server.mjs) and the graphql-js floor (floor.mjs).
//
// The recordings file (written by bench/peer.py) is
//   {"<workload>": {"query": "...", "requests": [{"variables": {...} | null, "data": {...}}]}}

import { readFileSync } from 'node:fs';

import { buildSchema, isAbstractType, isObjectType, Kind } from 'graphql';

const NO_ANSWER = 'no recorded answer for this request';

// The subgraph SDL is c360's schema.graphql plus the federation entry points (`_entities`,
// `_Any`, `_Entity`) that entities-100 sends; its @link/@key directives are not declared in it.
export function loadSchema(path) {
  const schema = buildSchema(readFileSync(path, 'utf8'), { assumeValidSDL: true });
  for (const type of Object.values(schema.getTypeMap())) {
    if (isObjectType(type) && !type.name.startsWith('__')) {
      for (const field of Object.values(type.getFields())) field.resolve = resolve;
    } else if (isAbstractType(type)) {
      type.resolveType = resolveType;
    }
  }
  return schema;
}

// The only work a field does: read its response key (an alias is its own key, so aliases of one
// field with different arguments each find their own answer). At the root of a served request
// there is no root value: the request's answer is in the context (see server.mjs).
function resolve(source, _args, context, info) {
  if (source === undefined) {
    source = context.answer;
    if (source === undefined) throw new Error(NO_ANSWER);
  }
  return source[info.path.key];
}

// c360's answer names its type only when the document asks for `__typename`; otherwise the type
// is the one whose selection gives exactly the keys the answer has, in order (c360 answered
// with that type's selection).
function resolveType(value, _context, info, abstractType) {
  if (typeof value.__typename === 'string') return value.__typename;
  const keys = Object.keys(value).join('\n');
  for (const [name, selected] of selectionKeys(info, abstractType)) {
    if (selected === keys) return name;
  }
  throw new Error(`no type of ${abstractType.name} selects the keys ${keys}`);
}

const byField = new WeakMap();

function selectionKeys(info, abstractType) {
  const node = info.fieldNodes[0];
  let cached = byField.get(node);
  if (cached === undefined) {
    cached = [];
    for (const type of info.schema.getPossibleTypes(abstractType)) {
      const keys = [];
      for (const field of info.fieldNodes) collectKeys(field.selectionSet, type, info, keys);
      cached.push([type.name, [...new Set(keys)].join('\n')]);
    }
    byField.set(node, cached);
  }
  return cached;
}

function collectKeys(selectionSet, type, info, keys) {
  for (const selection of selectionSet?.selections ?? []) {
    if (selection.kind === Kind.FIELD) {
      keys.push((selection.alias ?? selection.name).value);
      continue;
    }
    const fragment =
      selection.kind === Kind.FRAGMENT_SPREAD ? info.fragments[selection.name.value] : selection;
    const condition = fragment.typeCondition?.name.value;
    if (condition === undefined || applies(condition, type, info.schema)) {
      collectKeys(fragment.selectionSet, type, info, keys);
    }
  }
}

function applies(condition, type, schema) {
  if (condition === type.name) return true;
  const conditionType = schema.getType(condition);
  return isAbstractType(conditionType) && schema.isSubType(conditionType, type);
}

// The key of a request: its document and its variables as sent (JSON, in the order sent).
export function requestKey(query, variables) {
  return `${query}\n${JSON.stringify(variables ?? null)}`;
}

export function loadRecordings(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

export function answersByRequest(recordings) {
  const answers = new Map();
  for (const { query, requests } of Object.values(recordings)) {
    for (const { variables, data } of requests) answers.set(requestKey(query, variables), data);
  }
  return answers;
}
