// Package rowbatch holds the order in which every driver inserts a batch
// of rows, so that unique keys behave the same on each.
package rowbatch

import "github.com/kilnhq/kiln/queue"

// Insert inserts rows in order and returns their results. Rows without a
// unique key go to insert in chunks of at most chunk, as indexes into
// rows; a row with a unique key is first looked up with existing (after
// the rows before it are inserted, so a batch may hold duplicates of
// itself): a job found makes it a duplicate, none makes insert write it
// alone. insert fills out at the indexes it is given.
func Insert(rows []queue.Row, chunk int,
	insert func(idx []int, out []queue.InsertResult) error,
	existing func(r queue.Row) (*queue.Job, error),
) ([]queue.InsertResult, error) {
	out := make([]queue.InsertResult, len(rows))
	var plain []int
	flush := func() error {
		for len(plain) > 0 {
			n := min(len(plain), chunk)
			if err := insert(plain[:n], out); err != nil {
				return err
			}
			plain = plain[n:]
		}
		return nil
	}
	for i, r := range rows {
		if r.UniqueKey == "" {
			plain = append(plain, i)
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		j, err := existing(r)
		if err != nil {
			return nil, err
		}
		if j != nil {
			out[i] = queue.InsertResult{Job: j, Duplicate: true}
			continue
		}
		if err := insert([]int{i}, out); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}
