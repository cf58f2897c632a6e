package novacron

import "container/list"

// SeenIDs remembers the most recently seen record ids, at most Capacity of
// them (least recently seen forgotten first).
//
// Why a bounded set is enough: NovaCron delivers at least once, and a record
// is published again only when the worker redoes a batch it had not
// committed (after a restart or a rebalance), and a consumer sees a record
// again only when it re-reads what it had not committed. Either way the copy
// follows the original closely: within the records sent or read since the
// last commit. Capacity must exceed that many records of one topic. The
// default, 100,000 ids (about 15 MB), covers about 40 s of one worker's
// predictions at its measured peak (2,677 samples/s), many times the
// worker's and this consumer's commit intervals (seconds). A copy older than
// that is not dropped by id, but View's newest-by-ts rule still keeps it
// from replacing a newer prediction.
type SeenIDs struct {
	capacity int
	order    *list.List // front: most recently seen
	index    map[string]*list.Element
}

// NewSeenIDs returns an empty set holding at most capacity ids (at least 1).
func NewSeenIDs(capacity int) *SeenIDs {
	if capacity < 1 {
		capacity = 1
	}
	return &SeenIDs{capacity: capacity, order: list.New(), index: map[string]*list.Element{}}
}

// Add records id and tells whether it was already there.
func (s *SeenIDs) Add(id string) bool {
	if e, ok := s.index[id]; ok {
		s.order.MoveToFront(e)
		return true
	}
	s.index[id] = s.order.PushFront(id)
	if s.order.Len() > s.capacity {
		oldest := s.order.Back()
		s.order.Remove(oldest)
		delete(s.index, oldest.Value.(string))
	}
	return false
}

// Len is the number of ids held.
func (s *SeenIDs) Len() int { return s.order.Len() }
