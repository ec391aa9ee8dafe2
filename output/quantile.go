package output

import (
	"math/bits"
	"time"
)

// subBits sets the Quantiles' resolution: each doubling of duration is cut
// into 2^subBits equal buckets, so a quantile is known to within 1/2^subBits
// of its value (0.8%), about three significant digits: what FormatDuration
// prints.
const subBits = 7

// Quantiles tracks a distribution of durations in O(1) memory (a log-linear
// histogram of nanoseconds, as HDR histograms are): exact below 2^subBits ns,
// within 0.8% above. The zero value is ready to use.
type Quantiles struct {
	counts   [(64 - subBits + 1) << subBits]uint32
	N        uint64
	Min, Max time.Duration
}

// bucket is the index of d's bucket: values below 2^subBits have one each,
// then each power of two [2^k, 2^(k+1)) has 2^subBits.
func bucket(d time.Duration) int {
	v := uint64(d)
	k := bits.Len64(v) // v < 2^k
	if k <= subBits {
		return int(v)
	}
	shift := k - 1 - subBits
	return (k-subBits)<<subBits + int(v>>shift) - 1<<subBits
}

// bucketMid is the middle of bucket i, the value a quantile in it reads as.
func bucketMid(i int) time.Duration {
	if i < 1<<subBits {
		return time.Duration(i)
	}
	k := i>>subBits + subBits // the bucket holds [2^(k-1), 2^k)
	shift := k - 1 - subBits
	lo := uint64(i-(k-subBits)<<subBits+1<<subBits) << shift
	return time.Duration(lo + (uint64(1)<<shift)/2)
}

// Add counts d; d <= 0 (nothing measured) is ignored.
func (q *Quantiles) Add(d time.Duration) {
	if d <= 0 {
		return
	}
	i := bucket(d)
	if q.counts[i] == 1<<32-1 {
		return // saturated: four billion in one bucket changes no quantile we print
	}
	q.counts[i]++
	if q.N == 0 || d < q.Min {
		q.Min = d
	}
	if d > q.Max {
		q.Max = d
	}
	q.N++
}

// Quantile is the p-quantile (0 <= p <= 1) by the nearest-rank method: the
// value that ceil(p*N) of the added durations do not exceed, to the tracker's
// resolution, and never outside [Min, Max]. 0 when nothing was added.
func (q *Quantiles) Quantile(p float64) time.Duration {
	if q.N == 0 {
		return 0
	}
	rank := uint64(p*float64(q.N) + 0.9999999)
	rank = min(max(rank, 1), q.N)
	var seen uint64
	for i, c := range q.counts {
		seen += uint64(c)
		if seen >= rank {
			return min(max(bucketMid(i), q.Min), q.Max)
		}
	}
	return q.Max
}
