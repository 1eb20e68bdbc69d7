// Hostile request bodies against the compiled vault: oversized, nested, compressed, mistyped, non-ASCII digits, SQL.
// Each gets a 4xx; the process never crashes or answers 5xx, and no card is written.
import zlib from 'node:zlib';
import { newPan } from '../support/pans';
import { call, rawExchange } from './support/client';
import { card, hostileTarget, http } from './support/hostile-target';
import { watching } from './support/vault-process';

jest.setTimeout(120_000);

const t = hostileTarget('hostile-bodies');

it('refuses oversized, deeply nested and compressed-bomb bodies with 413 or 400', () =>
  watching(t.vault, async () => {
    const raw = (headers: string[], body: string) =>
      rawExchange(t.vault.port, http(['POST /v1/tokens HTTP/1.1', 'Host: v', `Authorization: Bearer ${t.keys.merchant}`, 'Content-Type: application/json', 'Connection: close', ...headers], body));
    const big = JSON.stringify(card({ holder_name: 'A'.repeat(1024 * 1024) }));
    t.expectRawRefused('1 MiB body', await raw([`Content-Length: ${big.length}`], big));
    t.expectRefused('100k [', await t.post('['.repeat(100_000)), 'payload_too_large');
    const chunked = `${(100_000).toString(16)}\r\n${'['.repeat(100_000)}\r\n0\r\n\r\n`;
    t.expectRawRefused('100k [ chunked', await raw(['Transfer-Encoding: chunked'], chunked));
    t.expectRefused('15k unclosed [', await t.post('['.repeat(15_000)), 'malformed_json');
    t.expectRefused('7k nested arrays', await t.post(`${'['.repeat(7000)}${']'.repeat(7000)}`));
    t.expectRefused('2.5k nested objects', await t.post(`{"card":{"number":${'{"a":'.repeat(2500)}1${'}'.repeat(2500)}}}`));
    const bomb = zlib.gzipSync(Buffer.alloc(20 * 1024 * 1024, 0x20));
    t.expectRefused('gzip bomb (20 MiB of spaces)', await t.post(bomb, { 'content-encoding': 'gzip' }), 'payload_too_large');
    await t.expectUnharmed();
  }));

it('refuses wrong types, malformed JSON, prototype-pollution keys and other media types with 400 or 415', () =>
  watching(t.vault, async () => {
    const pan = newPan();
    const bodies: Array<[string, string]> = [
      ['array', '[]'], ['null', 'null'], ['string', '"x"'], ['number', '42'], ['empty object', '{}'], ['card array', '{"card":[]}'],
      ['card string', '{"card":"x"}'], ['number as a JSON number', `{"card":{"number":${pan},"exp_month":12,"exp_year":2031}}`],
      ['exp_month string', JSON.stringify(card({ exp_month: '12' }))], ['exp_month fraction', JSON.stringify(card({ exp_month: 12.5 }))],
      ['exp_month 1e400', JSON.stringify(card()).replace('"exp_month":12', '"exp_month":1e400')], ['exp_year negative', JSON.stringify(card({ exp_year: -2031 }))],
      ['exp_year huge', JSON.stringify(card()).replace('"exp_year":2031', '"exp_year":99999999999999999999')], ['holder_name object', JSON.stringify(card({ holder_name: {} }))],
      ['holder_name 5000 chars', JSON.stringify(card({ holder_name: 'B'.repeat(5000) }))], ['holder_name control chars', JSON.stringify(card({ holder_name: 'A\u0000B\u001b[2J' }))],
      ['cvc number', JSON.stringify(card({ cvc: 123 }))], ['cvc letters', JSON.stringify(card({ cvc: '12a' }))], ['format array', JSON.stringify({ ...card(), format: ['opaque'] })],
      ['unknown field', JSON.stringify({ ...card(), admin: true })], ['__proto__ at the top', `{"__proto__":${JSON.stringify(card())}}`],
      ['card number in __proto__', `{"card":{"__proto__":{"number":"${pan}"},"exp_month":12,"exp_year":2031}}`],
      ['constructor.prototype', `{"card":{"number":"${pan}","exp_month":12,"exp_year":2031,"constructor":{"prototype":{"polluted":true}}}}`],
      ['duplicate key, bad last', `{"card":{"number":"${pan}","number":"${pan}x","exp_month":12,"exp_year":2031}}`],
      ['truncated', '{"card":'], ['single quotes', "{'card':1}"], ['trailing garbage', `${JSON.stringify(card())}garbage`], ['NaN', '{"card":{"number":NaN}}'],
      ['comment', `/* hi */${JSON.stringify(card())}`],
    ];
    for (const [name, body] of bodies) t.expectRefused(name, await t.post(body));
    t.expectRefused('invalid UTF-8', await t.post(Buffer.concat([Buffer.from('{"card":{"number":"4111'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('","exp_month":12,"exp_year":2031}}')])));
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=latin1']) {
      t.expectRefused(type, await t.post(JSON.stringify(card()), { 'content-type': type }), 'unsupported_media_type');
    }
    await t.expectUnharmed();
  }));

it('refuses card numbers written in non-ASCII digits (Arabic-Indic, fullwidth, …) or with separators as invalid_card_number', () =>
  watching(t.vault, async () => {
    const pan = newPan();
    const shift = (base: number) => [...pan].map((d) => String.fromCodePoint(base + Number(d))).join('');
    const variants: Array<[string, string]> = [
      ['Arabic-Indic', shift(0x0660)], ['Extended Arabic-Indic', shift(0x06f0)], ['fullwidth', shift(0xff10)], ['Devanagari', shift(0x0966)],
      ['mathematical bold (astral)', shift(0x1d7ce)], ['one fullwidth digit', `${pan.slice(0, 8)}${String.fromCodePoint(0xff10 + Number(pan[8]))}${pan.slice(9)}`],
      ['circled', shift(0x2460 - 1).replace(/\u245f/g, '\u24ea')], ['spaces', pan.replace(/(\d{4})(?=\d)/g, '$1 ')], ['hyphens', pan.replace(/(\d{4})(?=\d)/g, '$1-')],
      ['zero-width space', `${pan.slice(0, 6)}\u200b${pan.slice(6)}`], ['NUL', `${pan.slice(0, 6)}\u0000${pan.slice(6)}`], ['combining acute', `${pan}\u0301`],
      ['leading space', ` ${pan}`], ['negative', `-${pan}`], ['exponent', `${pan.slice(0, 15)}e1`], ['hex', `0x${BigInt(pan).toString(16)}`],
    ];
    for (const [name, number] of variants) {
      const res = await t.post({ card: { number, exp_month: 12, exp_year: 2031 } });
      t.expectRefused(name, res, 'invalid_card_number');
      expect(res.body.pointer).toBe('/card/number');
    }
    // The same, escaped in the JSON text rather than sent as UTF-8.
    t.expectRefused('Arabic-Indic, \\u-escaped', await t.post(`{"card":{"number":"${[...shift(0x0660)].map((c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`).join('')}","exp_month":12,"exp_year":2031}}`), 'invalid_card_number');
    await t.expectUnharmed();
  }));

it('answers a body that does not decompress (Content-Encoding gzip, deflate, br) with 400', () =>
  watching(t.vault, async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) t.expectRefused(`bogus ${encoding}`, await t.post(Buffer.from('not compressed at all'), { 'content-encoding': encoding }));
    await t.expectUnharmed();
  }));

it('answers SQL-looking fields, token paths and query strings with 400, 403 or 404, and changes nothing', () =>
  watching(t.vault, async () => {
    const sql = "' OR '1'='1'; DROP TABLE cards; --";
    t.expectRefused('number', await t.post({ card: { number: `4111111111111111${sql}`, exp_month: 12, exp_year: 2031 } }), 'invalid_card_number');
    t.expectRefused('format', await t.post({ ...card(), format: `bin6_last4${sql}` }), /^(unsupported_format|invalid_field)$/);
    t.expectRefused('holder_name on an expired card', await t.post(card({ holder_name: `Robert${sql}`, exp_year: 2020 })), 'card_expired');
    const enc = encodeURIComponent(sql);
    for (const path of [`/v1/tokens/1${enc}`, `/v1/tokens/tok_aaaaaaaaaaaaaaaa${enc}`, `/v1/tokens/${t.control.token}${enc}`, `/v1/tokens/${enc}`]) {
      t.expectRefused(`GET ${path}`, await call(t.vault.url, 'GET', path, { key: t.keys.merchant }), 'token_not_found');
      t.expectRefused(`DELETE ${path}`, await call(t.vault.url, 'DELETE', path, { key: t.keys.merchant }), 'token_not_found');
      t.expectRefused(`detokenize ${path}`, await call(t.vault.url, 'POST', `${path}/detokenize`, { key: t.keys.payments, body: { purpose: 'authorization' } }), 'token_not_found');
    }
    t.expectRefused('purpose', await call(t.vault.url, 'POST', `/v1/tokens/${t.control.token}/detokenize`, { key: t.keys.payments, body: { purpose: `authorization${sql}` } }));
    t.expectRefused('PATCH', await call(t.vault.url, 'PATCH', `/v1/tokens/${t.control.token}`, { key: t.keys.merchant, body: { card: { holder_name: `x${sql}`, exp_month: 13 } } }));
    t.expectRefused('audit query', await call(t.vault.url, 'GET', `/v1/audit/events?from=2020-01-01${enc}`, { key: t.keys.auditor }));
    t.expectRefused('API key', await call(t.vault.url, 'GET', `/v1/tokens/${t.control.token}`, { key: `cvk_${sql}` }), 'unauthenticated');
    await t.expectUnharmed();
  }));
