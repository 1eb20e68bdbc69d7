// RFC 8785 canonical JSON: the RFC's own examples and number samples, key order by UTF-16 code units, and refusals.
import { canonicalJson } from '../../src/audit/canonical-json';

/** A double from its IEEE 754 bit pattern, as RFC 8785 Appendix B lists its samples. */
function double(hex: string): number {
  return Buffer.from(hex, 'hex').readDoubleBE(0);
}

describe('canonicalJson', () => {
  it('writes the RFC 8785 §3.2.2 sample exactly as the RFC does', () => {
    const parsed: unknown = JSON.parse(String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`);
    expect(canonicalJson(parsed)).toBe(
      String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
    );
  });

  it('orders keys by UTF-16 code units as in RFC 8785 §3.2.3, non-ASCII and astral keys included', () => {
    const parsed: unknown = JSON.parse(String.raw`{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }`);
    const text = canonicalJson(parsed);
    // Read as text: JSON.parse would move the integer-like key "1" first again.
    expect([...text.matchAll(/":"([^"]+)"/g)].map((m) => m[1])).toEqual([
      'Carriage Return',
      'One',
      'Control',
      'Latin Small Letter O With Diaeresis',
      'Euro Sign',
      'Emoji: Grinning Face',
      'Hebrew Letter Dalet With Dagesh',
    ]);
    expect(text.startsWith('{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":')).toBe(true);
  });

  it('sorts the keys of nested objects and keeps array order', () => {
    const value = { z: [{ b: 1, a: 2 }, 3, 'c'], a: { d: false, c: null, B: [] }, aa: {}, A: 'upper' };
    expect(canonicalJson(value)).toBe('{"A":"upper","a":{"B":[],"c":null,"d":false},"aa":{},"z":[{"a":2,"b":1},3,"c"]}');
  });

  it.each([
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ])('serialises the RFC 8785 Appendix B double %s as %s', (bits, expected) => {
    expect(canonicalJson(double(bits))).toBe(expected);
  });

  it('switches to exponents at 1e21 and 1e-7, and writes -0 as 0', () => {
    expect(canonicalJson([1e21, 1e20, 1e-7, 1e-6, -0, 0, -1.5])).toBe('[1e+21,100000000000000000000,1e-7,0.000001,0,0,-1.5]');
  });

  it('escapes only quotes, backslashes and control characters, the short forms where JSON has them', () => {
    expect(canonicalJson('\b\t\n\f\r\u0000\u001f"\\/\u007f\u2028é😀')).toBe('"\\b\\t\\n\\f\\r\\u0000\\u001f\\"\\\\/\u007f\u2028é😀"');
  });

  it('writes the literals and empty containers', () => {
    expect(canonicalJson([null, true, false, [], {}, ''])).toBe('[null,true,false,[],{},""]');
  });

  it('omits object members whose value is undefined', () => {
    expect(canonicalJson({ b: undefined, a: 1, c: { d: undefined } })).toBe('{"a":1,"c":{}}');
  });

  it('accepts objects without a prototype and values shared by several members', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { y: 1, x: 2 });
    const shared = { k: 'v' };
    expect(canonicalJson({ bare, p: shared, q: [shared] })).toBe('{"bare":{"x":2,"y":1},"p":{"k":"v"},"q":[{"k":"v"}]}');
  });

  it('is the identity on its own output after a parse', () => {
    const value = { tenant: 't-1', seq: 42, details: { amount: 12.5, tags: ['a', 'b'], nested: { z: null, y: true } } };
    const once = canonicalJson(value);
    expect(canonicalJson(JSON.parse(once))).toBe(once);
  });

  describe('throws TypeError for', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic['self'] = cyclic;
    const cyclicArray: unknown[] = [];
    cyclicArray.push(cyclicArray);

    it.each<[string, unknown]>([
      ['undefined at the top', undefined],
      ['undefined inside an array', [1, undefined]],
      ['a hole in an array', [1, , 3]], // eslint-disable-line no-sparse-arrays
      ['a function', { f: () => 1 }],
      ['a bigint', { n: BigInt(1) }],
      ['a symbol', [Symbol('s')]],
      ['NaN', { n: NaN }],
      ['Infinity', [Infinity]],
      ['-Infinity', -Infinity],
      ['a lone high surrogate in a string', 'a\ud800b'],
      ['a lone low surrogate in a key', { '\udc00': 1 }],
      ['a Date', { at: new Date(0) }],
      ['a Buffer', Buffer.from('x')],
      ['a Map', new Map([['a', 1]])],
      ['a class instance', new (class Point { x = 1; })()],
      ['a cyclic object', cyclic],
      ['a cyclic array', cyclicArray],
    ])('%s', (_, value) => {
      expect(() => canonicalJson(value)).toThrow(TypeError);
    });
  });
});
