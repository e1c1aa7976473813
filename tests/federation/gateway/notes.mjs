// A second, small subgraph for the federation test: support notes about c360's customers.
//
// It extends c360's `Customer @key(fields: "id")` with `notes`, and its own root field `notes`
// returns Customer references that only c360 can complete, so a query through the gateway
// crosses from this subgraph into c360 (`_entities`) and back.

import { parse } from 'graphql';

export const typeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])

  type Query {
    "Every support note, oldest first."
    notes: [Note!]!
  }

  "A note a support agent wrote about a customer."
  type Note {
    id: ID!
    text: String!
    "The customer the note is about (resolved by c360)."
    customer: Customer!
  }

  type Customer @key(fields: "id") {
    id: ID!
    "The support notes about this customer."
    notes: [Note!]!
  }
`);

/** Resolvers over `notes`, a list of {id, text, customerId}. */
export function createResolvers(notes) {
  const about = (customerId) => notes.filter((note) => note.customerId === customerId);
  return {
    Query: {
      notes: () => notes,
    },
    Note: {
      customer: (note) => ({ __typename: 'Customer', id: note.customerId }),
    },
    Customer: {
      __resolveReference: (reference) => ({ id: reference.id }),
      notes: (customer) => about(customer.id),
    },
  };
}
