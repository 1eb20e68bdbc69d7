// The RFC 9162 Merkle tree: published reference roots, proofs cross-checked against an independent recursive
// implementation of the RFC's definitions, every tamper rejected, and the frontier matching full recomputation.
import { createHash } from 'node:crypto';
import {
  consistencyProof,
  emptyRoot,
  inclusionProof,
  leafHash,
  MerkleFrontier,
  nodeHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle';

// ---- An independent implementation, written from RFC 9162 §2.1 definitions (recursive, no bit tricks). ----

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const part of parts) h.update(part);
  return h.digest();
}
const refLeaf = (data: Buffer): Buffer => sha256(Buffer.from([0x00]), data);
const refNode = (left: Buffer, right: Buffer): Buffer => sha256(Buffer.from([0x01]), left, right);
/** k: the largest power of two smaller than n (n ≥ 2). */
const refSplit = (n: number): number => 2 ** Math.floor(Math.log2(n - 1));

/** MTH(D[n]) of §2.1.1, over leaf hashes. */
function refMth(d: Buffer[]): Buffer {
  if (d.length === 0) return sha256();
  if (d.length === 1) return d[0];
  const k = refSplit(d.length);
  return refNode(refMth(d.slice(0, k)), refMth(d.slice(k)));
}

/** PATH(m, D[n]) of §2.1.3.1. */
function refPath(m: number, d: Buffer[]): Buffer[] {
  if (d.length === 1) return [];
  const k = refSplit(d.length);
  return m < k ? [...refPath(m, d.slice(0, k)), refMth(d.slice(k))] : [...refPath(m - k, d.slice(k)), refMth(d.slice(0, k))];
}

/** SUBPROOF(m, D[n], b) of §2.1.4.1; PROOF(m, D[n]) is SUBPROOF(m, D[n], true). */
function refSubproof(m: number, d: Buffer[], b: boolean): Buffer[] {
  if (m === d.length) return b ? [] : [refMth(d)];
  const k = refSplit(d.length);
  return m <= k
    ? [...refSubproof(m, d.slice(0, k), b), refMth(d.slice(k))]
    : [...refSubproof(m - k, d.slice(k), false), refMth(d.slice(0, k))];
}

/** Undoes PATH's recursion: the root the path implies for that leaf, index and size, or null if it cannot fit. */
function refRootFromPath(index: number, n: number, leaf: Buffer, path: Buffer[]): Buffer | null {
  if (n === 1) return path.length === 0 ? leaf : null;
  if (path.length === 0) return null;
  const sibling = path[path.length - 1];
  const k = refSplit(n);
  const below = index < k ? refRootFromPath(index, k, leaf, path.slice(0, -1)) : refRootFromPath(index - k, n - k, leaf, path.slice(0, -1));
  if (!below) return null;
  return index < k ? refNode(below, sibling) : refNode(sibling, below);
}

function refAcceptsInclusion(leaf: Buffer, index: number, n: number, path: Buffer[], root: Buffer): boolean {
  return index < n && refRootFromPath(index, n, leaf, path)?.equals(root) === true;
}

/** Undoes SUBPROOF's recursion: [old root, new root] the proof implies, or null if it cannot fit. */
function refRootsFromProof(m: number, n: number, proof: Buffer[], b: boolean, firstRoot: Buffer): [Buffer, Buffer] | null {
  if (m === n) {
    if (b) return proof.length === 0 ? [firstRoot, firstRoot] : null;
    return proof.length === 1 ? [proof[0], proof[0]] : null;
  }
  if (proof.length === 0) return null;
  const last = proof[proof.length - 1];
  const k = refSplit(n);
  if (m <= k) {
    const below = refRootsFromProof(m, k, proof.slice(0, -1), b, firstRoot);
    return below && [below[0], refNode(below[1], last)];
  }
  const below = refRootsFromProof(m - k, n - k, proof.slice(0, -1), false, firstRoot);
  return below && [refNode(last, below[0]), refNode(last, below[1])];
}

function refAcceptsConsistency(m: number, n: number, firstRoot: Buffer, secondRoot: Buffer, proof: Buffer[]): boolean {
  if (m < 1 || m > n) return false;
  const roots = refRootsFromProof(m, n, proof, true, firstRoot);
  return roots !== null && roots[0].equals(firstRoot) && roots[1].equals(secondRoot);
}

// ---- Fixtures ----

const hex = (hashes: Buffer[]): string[] => hashes.map((h) => h.toString('hex'));
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function flipped(buffer: Buffer, byte: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[byte] ^= 0x01;
  return copy;
}

/** 64 distinct leaves of varying length, so no two leaf hashes (or subtree roots) coincide. */
const LEAVES = range(0, 63).map((i) => Buffer.from(`audit event ${i}:${'x'.repeat(i % 7)}`));
const HASHES = LEAVES.map(refLeaf);
const ROOTS = range(0, 64).map((n) => refMth(HASHES.slice(0, n)));
const SIZES = range(1, 64);

// RFC 6962 test data published by transparency-dev/merkle, testonly/constants.go (LeafInputs, NodeHashes,
// RootHashes, CompactTrees); the same vectors as the original certificate-transparency reference implementation.
const REFERENCE_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
const REFERENCE_LEAF_HASHES = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
  '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
  '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
  'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
  '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
  'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
  '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
];
const REFERENCE_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const REFERENCE_EMPTY_ROOT = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
// NodeHashes() levels 1..3 (level 0 is the leaf hashes above) and CompactTrees(): the right-edge subtree
// roots for sizes 0..8.
const REFERENCE_LEVEL_1 = [
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
  '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
  'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
];
const REFERENCE_LEVEL_2 = [
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
];
const REFERENCE_LEVEL_3 = ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'];
const [L0, L1, L2, L3] = [REFERENCE_LEAF_HASHES, REFERENCE_LEVEL_1, REFERENCE_LEVEL_2, REFERENCE_LEVEL_3];
const REFERENCE_COMPACT_TREES = [
  [],
  [L0[0]],
  [L1[0]],
  [L1[0], L0[2]],
  [L2[0]],
  [L2[0], L0[4]],
  [L2[0], L1[2]],
  [L2[0], L1[2], L0[6]],
  [L3[0]],
];

describe('RFC 6962 reference vectors (transparency-dev/merkle)', () => {
  const referenceHashes = REFERENCE_LEAVES.map((h) => leafHash(Buffer.from(h, 'hex')));

  it('hashes the reference leaves to the published leaf hashes', () => {
    expect(hex(referenceHashes)).toEqual(REFERENCE_LEAF_HASHES);
  });

  it('gives the published node hash of every complete subtree', () => {
    [L0, L1, L2, L3].forEach((level, height) => {
      const width = 2 ** height;
      expect(level.map((_, j) => rootFromLeafHashes(referenceHashes.slice(j * width, (j + 1) * width)).toString('hex'))).toEqual(level);
    });
  });

  it.each(range(1, 8))('gives the published root for the first %i reference leaves', (n) => {
    expect(rootFromLeafHashes(referenceHashes.slice(0, n)).toString('hex')).toBe(REFERENCE_ROOTS[n - 1]);
  });

  it('gives SHA-256 of the empty string as the empty tree root', () => {
    expect(emptyRoot().toString('hex')).toBe(REFERENCE_EMPTY_ROOT);
    expect(rootFromLeafHashes([]).toString('hex')).toBe(REFERENCE_EMPTY_ROOT);
    expect(new MerkleFrontier().root().toString('hex')).toBe(REFERENCE_EMPTY_ROOT);
  });

  it('keeps the published compact range for every size 0..8', () => {
    const frontier = new MerkleFrontier();
    REFERENCE_COMPACT_TREES.forEach((expected, n) => {
      if (n > 0) frontier.append(referenceHashes[n - 1]);
      expect(frontier.toJSON().hashes.map((b) => Buffer.from(b, 'base64').toString('hex'))).toEqual(expected);
      expect(frontier.root().toString('hex')).toBe(n === 0 ? REFERENCE_EMPTY_ROOT : REFERENCE_ROOTS[n - 1]);
    });
  });
});

describe('agreement with the independent RFC implementation', () => {
  it('hashes leaves and nodes with the 0x00 and 0x01 prefixes', () => {
    expect(leafHash(LEAVES[5]).equals(refLeaf(LEAVES[5]))).toBe(true);
    expect(nodeHash(HASHES[1], HASHES[2]).equals(refNode(HASHES[1], HASHES[2]))).toBe(true);
  });

  it.each(range(0, 64))('computes MTH of the first %i leaves', (n) => {
    expect(rootFromLeafHashes(HASHES.slice(0, n)).equals(ROOTS[n])).toBe(true);
  });

  it.each(SIZES)('builds PATH for every leaf of a %i-leaf tree, and both verifiers accept it', (n) => {
    for (let i = 0; i < n; i += 1) {
      const proof = inclusionProof(HASHES, i, n);
      expect(hex(proof)).toEqual(hex(refPath(i, HASHES.slice(0, n))));
      expect(refAcceptsInclusion(HASHES[i], i, n, proof, ROOTS[n])).toBe(true);
      expect(verifyInclusion(HASHES[i], i, n, proof, ROOTS[n])).toBe(true);
    }
  });

  it.each(SIZES)('builds PROOF from every older size to a %i-leaf tree, and both verifiers accept it', (n) => {
    for (let m = 1; m <= n; m += 1) {
      const proof = consistencyProof(HASHES, m, n);
      expect(hex(proof)).toEqual(hex(refSubproof(m, HASHES.slice(0, n), true)));
      expect(refAcceptsConsistency(m, n, ROOTS[m], ROOTS[n], proof)).toBe(true);
      expect(verifyConsistency(m, n, ROOTS[m], ROOTS[n], proof)).toBe(true);
    }
  });
});

describe('verifyInclusion rejects', () => {
  const cases = range(1, 24).flatMap((n) => range(0, n - 1).map((i) => ({ n, i, proof: inclusionProof(HASHES, i, n) })));

  it('a flipped byte in any proof element, the leaf hash or the root', () => {
    for (const { n, i, proof } of cases) {
      proof.forEach((element, e) => {
        for (const byte of [0, 17, 31]) {
          const tampered = proof.map((p, j) => (j === e ? flipped(element, byte) : p));
          expect(verifyInclusion(HASHES[i], i, n, tampered, ROOTS[n])).toBe(false);
        }
      });
      expect(verifyInclusion(flipped(HASHES[i], 9), i, n, proof, ROOTS[n])).toBe(false);
      expect(verifyInclusion(HASHES[i], i, n, proof, flipped(ROOTS[n], 30))).toBe(false);
    }
  });

  it('the proof presented with any other index of the same tree', () => {
    for (const { n, i, proof } of cases) {
      for (let other = 0; other < n + 2; other += 1) {
        if (other !== i) expect(verifyInclusion(HASHES[i], other, n, proof, ROOTS[n])).toBe(false);
      }
    }
  });

  it('a truncated or extended proof', () => {
    for (const { n, i, proof } of cases) {
      if (proof.length > 0) expect(verifyInclusion(HASHES[i], i, n, proof.slice(0, -1), ROOTS[n])).toBe(false);
      expect(verifyInclusion(HASHES[i], i, n, [...proof, HASHES[0]], ROOTS[n])).toBe(false);
      expect(verifyInclusion(HASHES[i], i, n, [HASHES[0], ...proof], ROOTS[n])).toBe(false);
    }
  });

  it('another tree size whenever the path would differ in shape, exactly as the independent verifier does', () => {
    const pathLength = range(1, 64).map((size) => range(0, size - 1).map((i) => inclusionProof(HASHES, i, size).length));
    let rejected = 0;
    for (const { n, i, proof } of cases) {
      for (const size of range(1, 64)) {
        if (size === n) continue;
        const verdict = verifyInclusion(HASHES[i], i, size, proof, ROOTS[n]);
        expect(verdict).toBe(refAcceptsInclusion(HASHES[i], i, size, proof, ROOTS[n]));
        if (i >= size || pathLength[size - 1][i] !== proof.length) expect(verdict).toBe(false);
        if (!verdict) rejected += 1;
      }
    }
    expect(rejected).toBeGreaterThan(0);
  });

  it('nothing of a same-shaped size: the size is bound by the signed tree head, not by the proof (RFC behaviour)', () => {
    // Leaf 0 climbs left-left in a 3-leaf tree and in a 4-leaf tree alike.
    const proof = inclusionProof(HASHES, 0, 3);
    expect(verifyInclusion(HASHES[0], 0, 4, proof, ROOTS[3])).toBe(true);
    expect(verifyInclusion(HASHES[0], 0, 4, proof, ROOTS[4])).toBe(false);
  });

  it('an index at or past the tree size, and malformed numbers or hashes', () => {
    const proof = inclusionProof(HASHES, 3, 8);
    for (const [index, size] of [[8, 8], [9, 8], [3, 0], [-1, 8], [3.5, 8], [3, 8.5], [NaN, 8], [3, Infinity]]) {
      expect(verifyInclusion(HASHES[3], index, size, proof, ROOTS[8])).toBe(false);
    }
    expect(verifyInclusion(HASHES[3].subarray(1), 3, 8, proof, ROOTS[8])).toBe(false);
    expect(verifyInclusion(HASHES[3], 3, 8, proof, Buffer.concat([ROOTS[8], Buffer.alloc(1)]))).toBe(false);
    expect(verifyInclusion(HASHES[3], 3, 8, [proof[0].subarray(0, 31), ...proof.slice(1)], ROOTS[8])).toBe(false);
  });
});

describe('verifyConsistency rejects', () => {
  const cases = range(2, 24).flatMap((n) => range(1, n - 1).map((m) => ({ m, n, proof: consistencyProof(HASHES, m, n) })));

  it('a flipped byte in any proof element or either root', () => {
    for (const { m, n, proof } of cases) {
      proof.forEach((element, e) => {
        for (const byte of [0, 17, 31]) {
          const tampered = proof.map((p, j) => (j === e ? flipped(element, byte) : p));
          expect(verifyConsistency(m, n, ROOTS[m], ROOTS[n], tampered)).toBe(false);
        }
      });
      expect(verifyConsistency(m, n, flipped(ROOTS[m], 4), ROOTS[n], proof)).toBe(false);
      expect(verifyConsistency(m, n, ROOTS[m], flipped(ROOTS[n], 4), proof)).toBe(false);
    }
  });

  it('swapped roots', () => {
    for (const { m, n, proof } of cases) expect(verifyConsistency(m, n, ROOTS[n], ROOTS[m], proof)).toBe(false);
  });

  it('a truncated, emptied or extended proof', () => {
    for (const { m, n, proof } of cases) {
      expect(verifyConsistency(m, n, ROOTS[m], ROOTS[n], proof.slice(0, -1))).toBe(false);
      expect(verifyConsistency(m, n, ROOTS[m], ROOTS[n], [])).toBe(false);
      expect(verifyConsistency(m, n, ROOTS[m], ROOTS[n], [...proof, HASHES[0]])).toBe(false);
      expect(verifyConsistency(m, n, ROOTS[m], ROOTS[n], [ROOTS[m], ...proof])).toBe(false);
    }
  });

  it('other sizes, exactly as the independent verifier does', () => {
    for (const { m, n, proof } of cases) {
      for (const [first, second] of [[m - 1, n], [m + 1, n], [m, n - 1], [m, n + 1], [n, m]]) {
        const verdict = verifyConsistency(first, second, ROOTS[m], ROOTS[n], proof);
        expect(verdict).toBe(refAcceptsConsistency(first, second, ROOTS[m], ROOTS[n], proof));
      }
    }
  });

  it('equal sizes unless the proof is empty and the roots are equal', () => {
    expect(verifyConsistency(5, 5, ROOTS[5], ROOTS[5], [])).toBe(true);
    expect(verifyConsistency(5, 5, ROOTS[5], ROOTS[6], [])).toBe(false);
    expect(verifyConsistency(5, 5, ROOTS[5], ROOTS[5], [HASHES[0]])).toBe(false);
    expect(consistencyProof(HASHES, 5, 5)).toEqual([]);
  });

  it('a first size of 0, a first size past the second, and malformed numbers or hashes', () => {
    const proof = consistencyProof(HASHES, 3, 7);
    expect(verifyConsistency(0, 7, ROOTS[0], ROOTS[7], proof)).toBe(false);
    expect(verifyConsistency(0, 7, ROOTS[0], ROOTS[7], [])).toBe(false);
    expect(verifyConsistency(0, 0, ROOTS[0], ROOTS[0], [])).toBe(false);
    expect(verifyConsistency(7, 3, ROOTS[7], ROOTS[3], proof)).toBe(false);
    expect(verifyConsistency(3.5, 7, ROOTS[3], ROOTS[7], proof)).toBe(false);
    expect(verifyConsistency(3, NaN, ROOTS[3], ROOTS[7], proof)).toBe(false);
    expect(verifyConsistency(3, 7, ROOTS[3].subarray(1), ROOTS[7], proof)).toBe(false);
    expect(verifyConsistency(3, 7, ROOTS[3], ROOTS[7], [...proof.slice(0, -1), Buffer.alloc(33)])).toBe(false);
  });
});

describe('proof builders', () => {
  it('throw RangeError for indexes and sizes outside the leaves', () => {
    const eight = HASHES.slice(0, 8);
    for (const [index, size] of [[0, 0], [8, 8], [-1, 8], [0, 9], [1.5, 8], [0, NaN]]) {
      expect(() => inclusionProof(eight, index, size)).toThrow(RangeError);
    }
    for (const [first, second] of [[0, 8], [0, 0], [5, 4], [1, 9], [-1, 8], [2.5, 8]]) {
      expect(() => consistencyProof(eight, first, second)).toThrow(RangeError);
    }
  });

  it('use only the first treeSize leaves', () => {
    expect(hex(inclusionProof(HASHES, 2, 5))).toEqual(hex(inclusionProof(HASHES.slice(0, 5), 2, 5)));
    expect(hex(consistencyProof(HASHES, 3, 5))).toEqual(hex(consistencyProof(HASHES.slice(0, 5), 3, 5)));
  });
});

describe('MerkleFrontier', () => {
  const many = range(0, 299).map((i) => refLeaf(Buffer.from(`frontier leaf ${i}`)));

  it('has the root of the whole prefix after every append, through a JSON round trip at 150', () => {
    let frontier = new MerkleFrontier();
    many.forEach((h, i) => {
      if (i === 150) {
        const restored = MerkleFrontier.fromJSON(JSON.parse(JSON.stringify(frontier)));
        expect(restored.size).toBe(150);
        expect(restored.root().equals(frontier.root())).toBe(true);
        frontier = restored;
      }
      frontier.append(h);
      expect(frontier.size).toBe(i + 1);
      expect(frontier.root().equals(rootFromLeafHashes(many.slice(0, i + 1)))).toBe(true);
    });
  });

  it('holds one hash per set bit of its size', () => {
    const frontier = new MerkleFrontier();
    for (const h of many.slice(0, 255)) frontier.append(h);
    expect(frontier.toJSON().hashes).toHaveLength(8);
    frontier.append(many[255]);
    expect(frontier.toJSON().hashes).toHaveLength(1);
  });

  it('does not share buffers with its callers', () => {
    const frontier = new MerkleFrontier();
    const leaf = Buffer.from(many[0]);
    frontier.append(leaf);
    frontier.root().fill(0);
    leaf.fill(0);
    expect(frontier.root().equals(many[0])).toBe(true);
  });

  it('agrees with rootFromLeafHashes on a large tree', () => {
    const hashes = range(0, 50_002).map((i) => refLeaf(Buffer.from(String(i))));
    const frontier = new MerkleFrontier();
    for (const h of hashes) frontier.append(h);
    expect(frontier.root().equals(rootFromLeafHashes(hashes))).toBe(true);
  });

  it('rejects a leaf hash that is not 32 bytes', () => {
    expect(() => new MerkleFrontier().append(Buffer.alloc(31))).toThrow(RangeError);
  });

  it('rejects serialised forms that are malformed or inconsistent with their size', () => {
    const h = many[0].toString('base64');
    const bad: unknown[] = [
      null,
      'x',
      [h],
      { hashes: [h] },
      { size: -1, hashes: [] },
      { size: 1.5, hashes: [h] },
      { size: 3, hashes: [h] },
      { size: 2, hashes: [h, h] },
      { size: 1, hashes: [h.replace('=', '')] },
      { size: 1, hashes: [` ${h}`] },
      { size: 1, hashes: [many[0].subarray(1).toString('base64')] },
      { size: 1, hashes: [42] },
      { size: 1, hashes: h },
    ];
    for (const json of bad) expect(() => MerkleFrontier.fromJSON(json)).toThrow();
    expect(MerkleFrontier.fromJSON({ size: 0, hashes: [] }).root().equals(emptyRoot())).toBe(true);
  });
});
