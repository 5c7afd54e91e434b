// Package uring is the part of Linux's io_uring that a socket relay needs:
// one ring driven by one thread (single issuer, deferred task work),
// receives, sends, eventfd reads and cancels, and a ring of provided
// buffers so that a waiting receive holds no memory of its own.
//
// The ring is not safe for concurrent use: every method but New must be
// called from the thread that called Enable, which must stay locked to
// its goroutine.
package uring

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's ABI, from include/uapi/linux/io_uring.h.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

type sqe struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, opFlags  uint32
	userData      uint64
	bufIndex      uint16
	personality   uint16
	spliceFdIn    int32
	addr3, pad    uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

const (
	opRead        = 22
	opSend        = 26
	opRecv        = 27
	opAsyncCancel = 14

	sqeBufferSelect = 1 << 5

	recvPollFirst = 1 << 0 // IORING_RECVSEND_POLL_FIRST, in ioprio

	enterGetEvents = 1

	offSQRing = 0
	offSQEs   = 0x10000000

	featSingleMmap = 1
	featNoDrop     = 1 << 1

	setupSubmitAll    = 1 << 7
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13
	setupRDisabled    = 1 << 6

	registerEnable   = 12
	registerPbufRing = 22

	cqeFBuffer     = 1
	cqeBufferShift = 16
)

// Ring is one io_uring instance.
type Ring struct {
	fd                     int
	sqHead, sqTail, sqMask *uint32
	sqArray                []uint32
	sqes                   []sqe
	cqHead, cqTail, cqMask *uint32
	cqes                   []cqe
	toSubmit               uint32
	ring, sqesMem          []byte
}

// New sets up a ring of entries submissions (a power of two), disabled
// until Enable: a single-issuer ring's issuer is the thread that enables
// it, which need not be the one that creates it.
func New(entries uint32) (*Ring, error) {
	var p params
	p.flags = setupSingleIssuer | setupDeferTaskrun | setupRDisabled | setupSubmitAll
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, os.NewSyscallError("io_uring_setup", e)
	}
	r := &Ring{fd: int(fd)}
	if p.features&featSingleMmap == 0 || p.features&featNoDrop == 0 {
		r.Close()
		return nil, fmt.Errorf("io_uring: the kernel lacks IORING_FEAT_SINGLE_MMAP or IORING_FEAT_NODROP: %w", errors.ErrUnsupported)
	}
	ringSize := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	var err error
	if r.ring, err = unix.Mmap(r.fd, offSQRing, int(ringSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return nil, os.NewSyscallError("mmap", err)
	}
	if r.sqesMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return nil, os.NewSyscallError("mmap", err)
	}
	base := unsafe.Pointer(&r.ring[0])
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r.sqHead, r.sqTail, r.sqMask = u32(p.sqOff.head), u32(p.sqOff.tail), u32(p.sqOff.ringMask)
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqesMem[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(p.cqOff.head), u32(p.cqOff.tail), u32(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	return r, nil
}

// Enable makes the calling thread the ring's only issuer.
func (r *Ring) Enable() error {
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEnable, 0, 0, 0, 0); e != 0 {
		return os.NewSyscallError("io_uring_register", e)
	}
	return nil
}

// Close releases the ring. Operations still in flight are cancelled by
// the kernel; memory they point into must outlive them, so a caller
// closes a ring only once nothing of its is in flight.
func (r *Ring) Close() error {
	if r.sqesMem != nil {
		unix.Munmap(r.sqesMem)
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	return unix.Close(r.fd)
}

// next returns a free submission entry, submitting what is queued when
// the queue is full.
func (r *Ring) next() (*sqe, error) {
	for {
		tail := atomic.LoadUint32(r.sqTail)
		if tail-atomic.LoadUint32(r.sqHead) < uint32(len(r.sqes)) {
			i := tail & *r.sqMask
			r.sqArray[i] = i
			e := &r.sqes[i]
			*e = sqe{}
			return e, nil
		}
		if err := r.Enter(false); err != nil {
			return nil, err
		}
	}
}

func (r *Ring) push() {
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+1)
	r.toSubmit++
}

// Recv queues a receive on fd into a buffer the kernel picks from group
// when data is there. The buffer id comes back with the completion.
//
// The receive waits for the socket to be readable before it tries
// (IORING_RECVSEND_POLL_FIRST): a relay queues one right after it took
// what the socket had, when a first try could only fail. A socket that
// is readable already still completes at once.
func (r *Ring) Recv(fd int, group uint16, size uint32, userData uint64) error {
	e, err := r.next()
	if err != nil {
		return err
	}
	e.opcode, e.fd, e.len, e.userData = opRecv, int32(fd), size, userData
	e.flags = sqeBufferSelect
	e.ioprio = recvPollFirst
	e.bufIndex = group
	r.push()
	return nil
}

// RecvInto queues a receive on fd into p, which must stay put until the
// completion.
func (r *Ring) RecvInto(fd int, p []byte, userData uint64) error {
	return r.prepBuf(opRecv, fd, p, userData)
}

// Send queues a send of p on fd; p must stay put until the completion.
// A stream socket may take less than all of p.
func (r *Ring) Send(fd int, p []byte, userData uint64) error {
	return r.prepBuf(opSend, fd, p, userData)
}

// Read queues a read(2) of fd into p (an eventfd's counter, say).
func (r *Ring) Read(fd int, p []byte, userData uint64) error {
	return r.prepBuf(opRead, fd, p, userData)
}

func (r *Ring) prepBuf(op uint8, fd int, p []byte, userData uint64) error {
	if len(p) == 0 {
		return fmt.Errorf("io_uring: empty buffer for opcode %d", op)
	}
	e, err := r.next()
	if err != nil {
		return err
	}
	e.opcode, e.fd, e.userData = op, int32(fd), userData
	e.addr, e.len = uint64(uintptr(unsafe.Pointer(&p[0]))), uint32(len(p))
	r.push()
	return nil
}

// Cancel queues the cancellation of the operation queued with target as
// its user data. The target completes, with -ECANCELED or with what it
// did before, and so does the cancel itself.
func (r *Ring) Cancel(target, userData uint64) error {
	e, err := r.next()
	if err != nil {
		return err
	}
	e.opcode, e.fd, e.addr, e.userData = opAsyncCancel, -1, target, userData
	r.push()
	return nil
}

// Enter submits what is queued and, with wait, waits for at least one
// completion to be there.
func (r *Ring) Enter(wait bool) error {
	var min, flags uintptr
	if wait {
		min, flags = 1, enterGetEvents
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(r.toSubmit), min, flags, 0, 0)
		switch e {
		case 0:
			r.toSubmit -= uint32(n)
			return nil
		case unix.EINTR:
			if !wait {
				continue
			}
			// Woken without a completion: the caller looks and waits
			// again.
			return nil
		case unix.EBUSY, unix.EAGAIN:
			// Completions are waiting to be reaped before more can
			// be submitted.
			return nil
		}
		return os.NewSyscallError("io_uring_enter", e)
	}
}

// Completion is one finished operation.
type Completion struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Buffer reports the provided buffer a receive completed into.
func (c Completion) Buffer() (id uint16, ok bool) {
	return uint16(c.Flags >> cqeBufferShift), c.Flags&cqeFBuffer != 0
}

// Err is the completion's error, nil when Res is not negative.
func (c Completion) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return unix.Errno(-c.Res)
}

// Reap calls f for each completion there, in order, and frees their
// slots. f may queue new operations.
func (r *Ring) Reap(f func(Completion)) {
	for {
		head := atomic.LoadUint32(r.cqHead)
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			c := r.cqes[head&*r.cqMask]
			// The slot is free once read: f may submit, and the
			// kernel then fills slots past it.
			atomic.StoreUint32(r.cqHead, head+1)
			f(Completion{UserData: c.userData, Res: c.res, Flags: c.flags})
		}
	}
}

// Buffers is a ring of provided buffers: count buffers of size bytes,
// outside Go's heap, that receives queued with Recv and its group take
// from as data arrives.
type Buffers struct {
	group     uint16
	size      int
	mem, ring []byte
	mask      uint16
	// tail is the next slot to fill; the kernel sees it at publish.
	tail uint16
}

// NewBuffers registers count (a power of two, at most 32768) buffers of
// size bytes as group on r.
func (r *Ring) NewBuffers(group uint16, count, size int) (*Buffers, error) {
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 {
		return nil, fmt.Errorf("io_uring: %d provided buffers: want a power of two up to 32768", count)
	}
	b := &Buffers{group: group, size: size, mask: uint16(count - 1)}
	var err error
	if b.ring, err = unix.Mmap(-1, 0, count*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	if b.mem, err = unix.Mmap(-1, 0, count*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		unix.Munmap(b.ring)
		return nil, os.NewSyscallError("mmap", err)
	}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.ring[0]))), ringEntries: uint32(count), bgid: group}
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0); e != 0 {
		b.Free()
		return nil, os.NewSyscallError("io_uring_register", e)
	}
	for i := range count {
		b.put(uint16(i))
	}
	b.publish()
	return b, nil
}

// Bytes is buffer id's memory.
func (b *Buffers) Bytes(id uint16) []byte {
	off := int(id) * b.size
	return b.mem[off : off+b.size : off+b.size]
}

// Recycle gives buffer id back to the kernel.
func (b *Buffers) Recycle(id uint16) {
	b.put(id)
	b.publish()
}

// put writes buffer id into the slot at the tail, field by field: the
// first slot's last field is the tail itself.
func (b *Buffers) put(id uint16) {
	slot := unsafe.Pointer(&b.ring[int(b.tail&b.mask)*16])
	*(*uint64)(slot) = uint64(uintptr(unsafe.Pointer(&b.mem[int(id)*b.size])))
	*(*uint32)(unsafe.Add(slot, 8)) = uint32(b.size)
	*(*uint16)(unsafe.Add(slot, 12)) = id
	b.tail++
}

// publish makes the slots written so far visible to the kernel by
// storing the tail, which overlays the first slot's last two bytes
// (struct io_uring_buf_ring). Go has no 16-bit atomic store: the
// 32-bit word that holds the tail and the first slot's buffer id (ours
// alone to write) is stored whole, after every slot it publishes.
func (b *Buffers) publish() {
	w := (*uint32)(unsafe.Pointer(&b.ring[12]))
	atomic.StoreUint32(w, atomic.LoadUint32(w)&0xffff|uint32(b.tail)<<16)
}

// Free releases the buffers' memory, once the ring they were registered
// with is closed.
func (b *Buffers) Free() {
	unix.Munmap(b.mem)
	unix.Munmap(b.ring)
}
