// JSON Schemas of the request bodies; openapi.json carries the same definitions (a test keeps them equal).

const EXPIRY = { exp_month: { type: 'integer' }, exp_year: { type: 'integer' } } as const;
const HOLDER_NAME = { minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]*$' } as const;

export const TOKENIZE_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['card'],
  properties: {
    card: {
      type: 'object',
      additionalProperties: false,
      required: ['number', 'exp_month', 'exp_year'],
      properties: {
        number: { type: 'string', maxLength: 64 },
        ...EXPIRY,
        holder_name: { type: 'string', ...HOLDER_NAME },
        cvc: { type: 'string', maxLength: 8 },
      },
    },
    format: { type: 'string', maxLength: 32 },
  },
} as const;

export const UPDATE_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['card'],
  properties: {
    card: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      dependentRequired: { exp_month: ['exp_year'], exp_year: ['exp_month'] },
      properties: {
        ...EXPIRY,
        holder_name: { type: ['string', 'null'], ...HOLDER_NAME },
      },
    },
  },
} as const;

export const DETOKENIZE_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['purpose'],
  properties: {
    purpose: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,31}$' },
  },
} as const;

export interface TokenizeBody {
  card: { number: string; exp_month: number; exp_year: number; holder_name?: string; cvc?: string };
  format?: string;
}

export interface UpdateBody {
  card: { exp_month?: number; exp_year?: number; holder_name?: string | null };
}

export interface DetokenizeBody {
  purpose: string;
}
