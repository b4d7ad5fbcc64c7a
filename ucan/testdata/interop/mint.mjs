// Interop helper for ucan/interop_test.go, run with node from this folder.
//
// Reads one JSON object on stdin:
//   { now, authority_seed, node_seed, executor, other, go_delegation,
//     go_invocation, go_tampered }          (seeds and tokens in base64)
// Mints tokens with iso-ucan (an implementation independent of go-ucan) and
// verifies the Go-minted ones with it; prints one JSON object on stdout:
//   { authority, node, delegation, invocation, invocation_glob,
//     invocation_other_executor, verify_go_delegation, verify_go_invocation,
//     verify_go_tampered }
// Each verify_* is "ok" or the error message.
import { readFileSync } from 'node:fs'
import { EdDSASigner } from 'iso-signatures/signers/eddsa.js'
import { verifier } from 'iso-signatures/verifiers/eddsa.js'
import { Resolver } from 'iso-signatures/verifiers/resolver.js'
import { Delegation } from 'iso-ucan/delegation'
import { Invocation } from 'iso-ucan/invocation'

const input = JSON.parse(readFileSync(0, 'utf8'))
const b64 = (s) => Uint8Array.from(Buffer.from(s, 'base64'))
const str = (bytes) => Buffer.from(bytes).toString('base64')

const now = input.now
const verifierResolver = new Resolver({ ...verifier })
const authority = await EdDSASigner.generate(b64(input.authority_seed))
const node = await EdDSASigner.generate(b64(input.node_seed))

// The authority grants the node /macula/call on io.acme.orders.*, as
// ucan.Issue does: a root delegation with a "like" statement on .resource.
const delegation = await Delegation.create({
  iss: authority,
  aud: node.did,
  sub: authority.did,
  cmd: '/macula/call',
  pol: [['like', '.resource', 'io.acme.orders.*']],
  exp: now + 3600,
  now,
})

const invoke = (resource, executor) =>
  Invocation.create({
    iss: node,
    aud: executor,
    sub: authority.did,
    cmd: '/macula/call',
    args: { resource },
    prf: [delegation],
    exp: now + 60,
    now,
    verifierResolver,
  })

const out = {
  authority: authority.did,
  node: node.did,
  delegation: str(delegation.bytes),
  invocation: str((await invoke('io.acme.orders.place', input.executor)).bytes),
  // The spec's glob accepts this name ("*" spans dots); Macula's
  // segment-aware reading of the same statement does not.
  invocation_glob: str(
    (await invoke('io.acme.orders.place.eu', input.executor)).bytes
  ),
  invocation_other_executor: str(
    (await invoke('io.acme.orders.place', input.other)).bytes
  ),
}

async function verify(fn) {
  try {
    await fn()
    return 'ok'
  } catch (error) {
    return String(error?.cause?.message ?? error?.message ?? error)
  }
}

const goDelegationBytes = b64(input.go_delegation)
out.verify_go_delegation = await verify(() =>
  Delegation.from({ bytes: goDelegationBytes, verifierResolver, now })
)
out.verify_go_tampered = await verify(() =>
  Delegation.from({ bytes: b64(input.go_tampered), verifierResolver, now })
)
out.verify_go_invocation = await verify(async () => {
  const proof = await Delegation.from({
    bytes: goDelegationBytes,
    verifierResolver,
    now,
  })
  await Invocation.from({
    bytes: b64(input.go_invocation),
    verifierResolver,
    now,
    resolveProof: async (cid) => {
      if (cid.toString() !== proof.cid.toString()) {
        throw new Error(`unknown proof ${cid}`)
      }
      return proof
    },
  })
})

process.stdout.write(JSON.stringify(out))
