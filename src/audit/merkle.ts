// The audit log's Merkle tree exactly as RFC 9162 §2.1: hashing, proof building, proof verification, the frontier.
import { createHash } from 'node:crypto';

const HASH_BYTES = 32;
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** The serialised MerkleFrontier: its size and its subtree roots in base64, largest subtree first. */
export interface MerkleFrontierJson {
  size: number;
  hashes: string[];
}

export function leafHash(data: Buffer): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

export function emptyRoot(): Buffer {
  return createHash('sha256').digest();
}

/** MTH(D[n]) over leaf hashes already computed with leafHash. */
export function rootFromLeafHashes(leafHashes: readonly Buffer[]): Buffer {
  if (leafHashes.length === 0) return emptyRoot();
  // Pairing neighbours level by level and lifting an odd last node unchanged builds exactly the tree that the
  // RFC's "largest power of two below n" split describes, with no recursion however many leaves there are.
  let level = leafHashes.slice();
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i], level[i + 1]));
    if (level.length % 2 === 1) next.push(level[level.length - 1]);
    level = next;
  }
  return Buffer.from(level[0]);
}

/** The leaves [lo, hi) whose subtree root is one element of a proof. */
export type LeafRange = readonly [lo: number, hi: number];

/** PATH(index, D[treeSize]) of §2.1.3.1: sibling subtree roots from the leaf's level up to the root's children. */
export function inclusionProof(leafHashes: readonly Buffer[], index: number, treeSize: number): Buffer[] {
  assertTreeSize(leafHashes, treeSize);
  return inclusionRanges(index, treeSize).map(([lo, hi]) => rangeRoot(leafHashes, lo, hi));
}

/** The leaves under each element of PATH(index, D[treeSize]), in its order: what a caller holding no leaves reads. */
export function inclusionRanges(index: number, treeSize: number): LeafRange[] {
  if (!isSize(treeSize) || treeSize < 1) throw new RangeError('tree size must be 1 or more');
  if (!Number.isSafeInteger(index) || index < 0 || index >= treeSize) throw new RangeError('leaf index is outside the tree');
  const path: LeafRange[] = [];
  let lo = 0;
  let hi = treeSize;
  // Walking down from the root finds the siblings top first; the RFC lists them bottom first.
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      path.push([lo + k, hi]);
      hi = lo + k;
    } else {
      path.push([lo, lo + k]);
      lo += k;
    }
  }
  return path.reverse();
}

/** PROOF(first, D[second]) of §2.1.4.1; empty when the sizes are equal. */
export function consistencyProof(leafHashes: readonly Buffer[], first: number, second: number): Buffer[] {
  assertTreeSize(leafHashes, second);
  return consistencyRanges(first, second).map(([lo, hi]) => rangeRoot(leafHashes, lo, hi));
}

/** The leaves under each element of PROOF(first, D[second]), in its order. */
export function consistencyRanges(first: number, second: number): LeafRange[] {
  if (!isSize(second) || second < 1) throw new RangeError('tree size must be 1 or more');
  // The RFC defines a proof only for 0 < first: an empty tree is consistent with everything, so there is nothing to prove.
  if (!Number.isSafeInteger(first) || first < 1 || first > second) throw new RangeError('first size must be in 1..second');
  const proof: LeafRange[] = [];
  let lo = 0;
  let hi = second;
  let m = first;
  let wholeOldTree = true; // SUBPROOF's b: the current subtree's root is the old tree's root, which the verifier holds.
  while (m !== hi - lo) {
    const k = splitPoint(hi - lo);
    if (m <= k) {
      proof.push([lo + k, hi]);
      hi = lo + k;
    } else {
      proof.push([lo, lo + k]);
      lo += k;
      m -= k;
      wholeOldTree = false;
    }
  }
  if (!wholeOldTree) proof.push([lo, hi]);
  return proof.reverse();
}

/** The §2.1.3.2 algorithm. The tree size is only as trustworthy as the signed tree head it came from. */
export function verifyInclusion(leafHash: Buffer, index: number, treeSize: number, proof: readonly Buffer[], root: Buffer): boolean {
  if (!isSize(index) || !isSize(treeSize) || index >= treeSize) return false;
  if (!isHash(leafHash) || !isHash(root) || !proof.every(isHash)) return false;
  let fn = index;
  let sn = treeSize - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return false; // more elements than the path has levels
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      // Skip the levels where this node is a lone right edge and is lifted without hashing.
      while (!isOdd(fn) && fn !== 0) [fn, sn] = [half(fn), half(sn)];
    } else {
      r = nodeHash(r, p);
    }
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 && r.equals(root);
}

/**
 * The §2.1.4.2 algorithm. Equal sizes need an empty proof and equal roots (the RFC only covers first < second);
 * first = 0 is refused, since the RFC defines no proof for it and an empty tree proves nothing about a later one.
 */
export function verifyConsistency(first: number, second: number, firstRoot: Buffer, secondRoot: Buffer, proof: readonly Buffer[]): boolean {
  if (!isSize(first) || !isSize(second) || first === 0 || first > second) return false;
  if (!isHash(firstRoot) || !isHash(secondRoot) || !proof.every(isHash)) return false;
  if (first === second) return proof.length === 0 && firstRoot.equals(secondRoot);
  if (proof.length === 0) return false;
  // An old tree of power-of-two size is a complete subtree of the new one, so its root is left out of the proof.
  const path = isPowerOfTwo(first) ? [firstRoot, ...proof] : proof;
  let fn = first - 1;
  let sn = second - 1;
  while (isOdd(fn)) [fn, sn] = [half(fn), half(sn)];
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!isOdd(fn) && fn !== 0) [fn, sn] = [half(fn), half(sn)];
    } else {
      sr = nodeHash(sr, c);
    }
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot);
}

/**
 * The right edge of the tree (a compact range): one perfect-subtree root per set bit of the size, largest first.
 * Appending and computing the root are O(log n), so the writer never reloads leaves to extend the tree.
 */
export class MerkleFrontier {
  #size = 0;
  #hashes: Buffer[] = [];

  get size(): number {
    return this.#size;
  }

  append(leafHash: Buffer): void {
    if (!isHash(leafHash)) throw new RangeError('a leaf hash is 32 bytes');
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new RangeError('the tree is full');
    let h: Buffer = Buffer.from(leafHash);
    // Each trailing 1 bit of the old size is a subtree as tall as the one being carried: merge, like binary addition.
    for (let s = this.#size; isOdd(s); s = half(s)) h = nodeHash(this.#hashes.pop()!, h);
    this.#hashes.push(h);
    this.#size += 1;
  }

  root(): Buffer {
    if (this.#hashes.length === 0) return emptyRoot();
    let r: Buffer = Buffer.from(this.#hashes[this.#hashes.length - 1]);
    for (let i = this.#hashes.length - 2; i >= 0; i -= 1) r = nodeHash(this.#hashes[i], r);
    return r;
  }

  toJSON(): MerkleFrontierJson {
    return { size: this.#size, hashes: this.#hashes.map((h) => h.toString('base64')) };
  }

  /** Rebuilds a frontier from toJSON's output (after a JSON round trip), rejecting anything inconsistent. */
  static fromJSON(json: unknown): MerkleFrontier {
    if (typeof json !== 'object' || json === null) throw new TypeError('a frontier is an object');
    const { size, hashes } = json as Partial<Record<keyof MerkleFrontierJson, unknown>>;
    if (!isSize(size) || !Array.isArray(hashes)) throw new TypeError('a frontier has a size and hashes');
    if (hashes.length !== countOnes(size)) throw new RangeError('frontier hashes do not match its size');
    const frontier = new MerkleFrontier();
    frontier.#hashes = hashes.map(decodeHash);
    frontier.#size = size;
    return frontier;
  }
}

function assertTreeSize(leafHashes: readonly Buffer[], treeSize: number): void {
  if (!Number.isSafeInteger(treeSize) || treeSize < 1 || treeSize > leafHashes.length) {
    throw new RangeError('tree size must be in 1..number of leaves');
  }
}

function rangeRoot(leafHashes: readonly Buffer[], lo: number, hi: number): Buffer {
  return rootFromLeafHashes(leafHashes.slice(lo, hi));
}

/** k of the RFC: the largest power of two strictly below n, for n ≥ 2. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

// Tree sizes may pass 2^32, where JavaScript's bitwise operators wrap, so bits are taken arithmetically.
function isOdd(n: number): boolean {
  return n % 2 === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

function isPowerOfTwo(n: number): boolean {
  return countOnes(n) === 1;
}

function countOnes(n: number): number {
  let ones = 0;
  for (let s = n; s > 0; s = half(s)) ones += s % 2;
  return ones;
}

export function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isHash(h: unknown): h is Buffer {
  return Buffer.isBuffer(h) && h.length === HASH_BYTES;
}

/** A 32-byte hash in its one canonical base64 spelling, else undefined (Buffer.from skips what it does not understand). */
export function canonicalHash(encoded: unknown): Buffer | undefined {
  if (typeof encoded !== 'string') return undefined;
  const h = Buffer.from(encoded, 'base64');
  return h.length === HASH_BYTES && h.toString('base64') === encoded ? h : undefined;
}

function decodeHash(encoded: unknown): Buffer {
  if (typeof encoded !== 'string') throw new TypeError('a frontier hash is a base64 string');
  const h = canonicalHash(encoded);
  if (!h) throw new RangeError('a frontier hash is 32 bytes in base64');
  return h;
}
