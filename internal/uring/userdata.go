package uring

// User data layout. Completions carry 64 bits chosen at submission; gyre
// never puts a Go pointer there (the GC cannot see it and the object could
// be freed or reused). Instead:
//
//	bits 63..56  op     what the request was (caller-defined, 0..255)
//	bits 55..32  gen    generation of the slot, 24 bits, bumped on reuse
//	bits 31..0   index  slot index in the owner's table
//
// A completion whose gen differs from the slot's current gen belongs to an
// earlier occupant of the slot and is dropped by the owner.

// GenMask is the range of a generation number.
const GenMask = 1<<24 - 1

// Pack builds user data from an op, a generation and a slot index.
func Pack(op uint8, gen, index uint32) uint64 {
	return uint64(op)<<56 | uint64(gen&GenMask)<<32 | uint64(index)
}

// Unpack splits user data built by Pack.
func Unpack(ud uint64) (op uint8, gen, index uint32) {
	return uint8(ud >> 56), uint32(ud>>32) & GenMask, uint32(ud)
}

// OpHandoff marks a MSG_RING completion from the acceptor: res is a newly
// accepted socket that the receiving ring now owns, index is the listener.
const OpHandoff uint8 = 255
