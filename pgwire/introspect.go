package pgwire

// Connections is the number of client connections the server is handling,
// in any stage from accept to the end of the session.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
