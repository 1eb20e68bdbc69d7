// Request bodies are checked against JSON Schemas (also published in openapi.json); each failure has its own code.
import Ajv2020 from 'ajv/dist/2020';
import type { ErrorObject, JSONSchemaType, ValidateFunction } from 'ajv';
import { VaultError, type ErrorCode } from '../errors';

// Draft 2020-12: the dialect of OpenAPI 3.1, so openapi.json can carry these schemas unchanged.
const ajv = new Ajv2020({ allErrors: false, strict: true });

function codeFor(error: ErrorObject): { code: ErrorCode; pointer: string } {
  const at = error.instancePath || '';
  switch (error.keyword) {
    case 'required':
      return { code: 'missing_field', pointer: `${at}/${String(error.params.missingProperty)}` };
    case 'dependentRequired':
      return { code: 'missing_field', pointer: `${at}/${String(error.params.missingProperty)}` };
    // The unknown name is not echoed: a client could have put card data in a key.
    case 'additionalProperties':
      return { code: 'unknown_field', pointer: at || '/' };
    case 'type':
      return { code: 'invalid_type', pointer: at || '/' };
    default:
      return { code: 'invalid_field', pointer: at || '/' };
  }
}

const DETAILS: Record<string, string> = {
  missing_field: 'a required field is missing',
  unknown_field: 'this object has a field that is not accepted',
  invalid_type: 'this field has the wrong type',
  invalid_field: 'this field is out of range or malformed',
};

export function validator<T>(schema: JSONSchemaType<T> | object): (body: unknown) => T {
  const validate = ajv.compile(schema) as ValidateFunction<T>;
  return (body) => {
    if (validate(body)) return body;
    const { code, pointer } = codeFor(validate.errors![0]!);
    throw new VaultError(code, `${DETAILS[code]}: ${pointer}`, { pointer });
  };
}
