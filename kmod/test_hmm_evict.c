// SPDX-License-Identifier: GPL-2.0
/*
 * hmm-harness: HMM_DMIRROR_EVICT_PFNS, an ioctl of lib/test_hmm.c that evicts a chosen,
 * possibly non-contiguous set of the device's pages to system memory through
 * migrate_device_pfns(), as GPU SVM drivers (drm_pagemap, xe) evict device memory without
 * a CPU VMA lookup. Stock test_hmm only evicts whole chunks, with migrate_device_range().
 *
 * harness/kmodext.py #includes this file into the kernel's own test_hmm.c just before
 * dmirror_fops_unlocked_ioctl(), so test_hmm's types and helpers (struct dmirror,
 * struct dmirror_device, BACKING_PAGE(), dmirror_page_to_device(), ...) are in scope, and
 * adds a case for HMM_DMIRROR_EVICT_PFNS to that function's switch. It does so only when the
 * kernel headers declare migrate_device_pfns() (exported since 6.15).
 *
 * Request, in struct hmm_dmirror_cmd:
 *   addr    first page of the range (page aligned: the ioctl dispatcher checks)
 *   npages  pages in the range, at most DMIRROR_EVICT_MAX_PAGES
 *   ptr     0 selects every page of the range; otherwise the user address of a bitmap of
 *           DIV_ROUND_UP(npages, 8) bytes where bit i % 8 of byte i / 8 selects page i
 * Result:
 *   cpages  pages moved to system memory. A selected page of a large device folio moves
 *           (and counts) the whole folio. Selected pages that are not this device's (in
 *           system memory, on another device, never populated, unmapped) are skipped, as
 *           are pages another thread holds locked at that moment.
 *   faults  0
 * Errors:
 *   -EINVAL  the range leaves the address space or is too long, or nothing is selected
 *   -EFAULT  the bitmap cannot be read, or no selected page lies in a mapping
 *   -EBUSY   part of the range kept changing for longer than HMM_RANGE_DEFAULT_TIMEOUT
 *   -ENOMEM
 */

#include <linux/build_bug.h>
#include <linux/sort.h>

/*
 * The pfns below go to migrate_device_pfns() raw, as 6.15 to 7.2 take them. A kernel
 * whose prototype differs must fail here, never build something that passes the wrong
 * kind of pfn.
 */
static_assert(__same_type(&migrate_device_pfns,
			  int (*)(unsigned long *, unsigned long)),
	      "hmm-harness: kmod/test_hmm_evict.c is written for "
	      "int migrate_device_pfns(unsigned long *src_pfns, unsigned long npages) "
	      "taking raw pfns (6.15 to 7.2); this kernel declares another type");

/*
 * The series "mm: Remove device private pages from the physical address space" first
 * makes migrate_device_pfns() take migrate-pfns (encoded with migrate_pfn()), with the same
 * C type, then adds MIGRATE_PFN_DEVICE_PRIVATE. harness/kmodext.py catches both steps in
 * migrate.h before building; this catches the second one in the compiler too.
 */
#ifdef MIGRATE_PFN_DEVICE_PRIVATE
#error "hmm-harness: migrate.h defines MIGRATE_PFN_DEVICE_PRIVATE, so migrate_device_pfns(unsigned long *src_pfns, unsigned long npages) takes migrate-pfns encoded with migrate_pfn(), not the raw pfns kmod/test_hmm_evict.c passes"
#endif

#ifdef MIGRATE_PFN_COMPOUND
#define DMIRROR_EVICT_PFN_COMPOUND	MIGRATE_PFN_COMPOUND
#else
/* Before device THP migration every device folio is a single page. */
#define DMIRROR_EVICT_PFN_COMPOUND	0UL
#endif

#define DMIRROR_EVICT_MAX_PAGES		(1UL << 20)
#define DMIRROR_EVICT_BATCH		64UL

static bool dmirror_evict_selected(const u8 *bitmap, unsigned long index)
{
	return !bitmap || (bitmap[index / BITS_PER_BYTE] >> (index % BITS_PER_BYTE)) & 1;
}

static int dmirror_evict_cmp_pfn(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a;
	unsigned long y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

/*
 * Step 1: the pfns of this device's pages mapped at the selected addresses, from a
 * hmm_range_fault() snapshot that faults nothing in. At most one pfn per selected page.
 * Returns how many were stored in @pfns, or a negative errno; *@mapped counts the
 * selected pages that lie in a VMA.
 */
static long dmirror_evict_collect(struct dmirror *dmirror, unsigned long start,
				  unsigned long npages, const u8 *bitmap,
				  unsigned long *pfns, unsigned long *mapped)
{
	struct mm_struct *mm = dmirror->notifier.mm;
	unsigned long hmm_pfns[DMIRROR_EVICT_BATCH];
	struct hmm_range range = {
		.notifier = &dmirror->notifier,
		.hmm_pfns = hmm_pfns,
		.default_flags = 0,
		.pfn_flags_mask = 0,
		.dev_private_owner = dmirror->mdevice,
	};
	unsigned long timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	unsigned long end = start + (npages << PAGE_SHIFT);
	unsigned long addr = start;
	long stored = 0;

	*mapped = 0;
	while (addr < end) {
		struct vm_area_struct *vma;
		unsigned long first, next, i;
		int ret;

		/* Start each batch at a selected page. */
		for (first = (addr - start) >> PAGE_SHIFT; first < npages; first++)
			if (dmirror_evict_selected(bitmap, first))
				break;
		if (first == npages)
			break;
		addr = start + (first << PAGE_SHIFT);
		next = min(end, addr + (DMIRROR_EVICT_BATCH << PAGE_SHIFT));

		range.notifier_seq = mmu_interval_read_begin(range.notifier);
		mmap_read_lock(mm);
		vma = find_vma(mm, addr);
		if (!vma || vma->vm_start >= end) {
			mmap_read_unlock(mm);
			break;
		}
		if (vma->vm_start > addr) {
			/* A hole: nothing to evict there. */
			addr = vma->vm_start;
			mmap_read_unlock(mm);
			continue;
		}
		range.start = addr;
		range.end = min(next, vma->vm_end);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(mm);
		if (ret == -EBUSY) {
			/* The address space changed meanwhile: this batch again. */
			if (time_after(jiffies, timeout))
				return -EBUSY;
			continue;
		}
		if (ret)
			return ret;
		timeout = jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);

		for (i = 0; i < (range.end - range.start) >> PAGE_SHIFT; i++) {
			unsigned long entry = hmm_pfns[i];
			struct page *page;

			if (!dmirror_evict_selected(bitmap, first + i))
				continue;
			(*mapped)++;
			if ((entry & HMM_PFN_ERROR) || !(entry & HMM_PFN_VALID))
				continue;
			page = hmm_pfn_to_page(entry);
			if (!is_device_private_page(page) && !is_device_coherent_page(page))
				continue;
			if (dmirror_page_to_device(page) != dmirror->mdevice)
				continue;
			pfns[stored++] = page_to_pfn(page);
		}
		addr = range.end;
		cond_resched();
	}
	return stored;
}

/* The live chunk of @mdevice that holds @pfn, if any. Under devmem_lock. */
static struct dmirror_chunk *dmirror_evict_chunk_of(struct dmirror_device *mdevice,
						    unsigned long pfn)
{
	unsigned int i;

	for (i = 0; i < mdevice->devmem_count; i++) {
		struct dmirror_chunk *chunk = mdevice->devmem_chunks[i];

		if (!chunk->remove &&
		    pfn >= PHYS_PFN(chunk->pagemap.range.start) &&
		    pfn <= PHYS_PFN(chunk->pagemap.range.end))
			return chunk;
	}
	return NULL;
}

/*
 * Step 2, under devmem_lock so that no chunk goes away meanwhile: lay the sorted, unique
 * @pfns out the way migrate_device_pfns() wants them. Each folio appears once, as its
 * head pfn followed by its tail pfns: migrate_device_pfns() takes a large folio at its
 * head and clears the entries after it, and should the folio be split first, its pages
 * are still there to be taken one by one. Pfns outside the device's live chunks are
 * dropped. Returns the number of entries; writes them to @out (when given) up to @room.
 *
 * Reading the folio of a page without a reference is racy but safe while its chunk
 * lives; a stale answer costs at most an eviction (the kernel revalidates each page when
 * it locks it). test_hmm never merges small device pages into a large folio, so a pfn
 * laid out alone cannot have become a tail page.
 */
static unsigned long dmirror_evict_layout(struct dmirror_device *mdevice,
					  const unsigned long *pfns, unsigned long npfns,
					  unsigned long *out, unsigned long room)
{
	unsigned long covered = 0, n = 0, i, j;

	for (i = 0; i < npfns; i++) {
		struct dmirror_chunk *chunk = dmirror_evict_chunk_of(mdevice, pfns[i]);
		unsigned long head = pfns[i], nr = 1;
		struct folio *folio;

		if (!chunk || pfns[i] < covered)
			continue;
		folio = page_folio(pfn_to_page(pfns[i]));
		if (folio_nr_pages(folio) > 1 && folio_pfn(folio) >= covered &&
		    dmirror_evict_chunk_of(mdevice, folio_pfn(folio)) == chunk &&
		    dmirror_evict_chunk_of(mdevice, folio_pfn(folio) +
					   folio_nr_pages(folio) - 1) == chunk) {
			head = folio_pfn(folio);
			nr = folio_nr_pages(folio);
		}
		if (out && n + nr > room)
			break;
		for (j = 0; out && j < nr; j++)
			out[n + j] = head + j;
		n += nr;
		covered = head + nr;
	}
	return n;
}

/* Step 3: system memory for each page migrate_device_pfns() locked, and the data. */
static void dmirror_evict_alloc_and_copy(const unsigned long *src, unsigned long *dst,
					 unsigned long n)
{
	unsigned long i;

	for (i = 0; i < n; i++) {
		struct page *spage = migrate_pfn_to_page(src[i]);
		struct page *rpage;
		struct folio *dfolio;
		unsigned int order;

		if (!spage || !(src[i] & MIGRATE_PFN_MIGRATE))
			continue;
		/*
		 * The pfns come from a snapshot, so a page may have been freed and
		 * handed out again since. zone_device_page_init() sets the refcount
		 * before it takes the page lock, so migrate_device_pfns() can lock a
		 * page test_hmm is still allocating: not yet anon, its
		 * zone_device_data still the free list's link instead of the backing
		 * page, no memcg charge. Copying from it reads device memory, and
		 * migrating it puts an uncharged folio on the LRU (which spins in
		 * folio_lruvec_lock_irqsave()). A page in use is anon; leave the rest.
		 */
		rpage = BACKING_PAGE(spage);
		if (!folio_test_anon(page_folio(spage)) || !rpage ||
		    (is_device_private_page(spage) && is_zone_device_page(rpage)))
			continue;
		order = (src[i] & DMIRROR_EVICT_PFN_COMPOUND) ?
			folio_order(page_folio(spage)) : 0;
		/* A failed huge allocation leaves the folio on the device, quietly. */
		dfolio = folio_alloc(GFP_HIGHUSER_MOVABLE | (order ? __GFP_NOWARN : 0),
				     order);
		if (!dfolio)
			continue;	/* dst stays empty: the page stays on the device */
		folio_lock(dfolio);
		dst[i] = migrate_pfn(folio_pfn(dfolio)) | (src[i] & MIGRATE_PFN_WRITE);
		if (order)
			dst[i] |= DMIRROR_EVICT_PFN_COMPOUND;
		folio_copy(dfolio, page_folio(rpage));
	}
}

static int dmirror_evict_pfns(struct dmirror *dmirror, struct hmm_dmirror_cmd *cmd)
{
	struct dmirror_device *mdevice = dmirror->mdevice;
	struct mm_struct *mm = dmirror->notifier.mm;
	unsigned long start = cmd->addr;
	unsigned long npages = cmd->npages;
	unsigned long *pfns = NULL, *src = NULL, *dst = NULL;
	unsigned long nselected = 0, mapped, npfns, total, i, evicted = 0;
	u8 *bitmap = NULL;
	long collected;
	int ret = 0;

	if (!npages || npages > DMIRROR_EVICT_MAX_PAGES)
		return -EINVAL;
	if (start >= mm->task_size || npages > (mm->task_size - start) >> PAGE_SHIFT)
		return -EINVAL;

	if (cmd->ptr) {
		bitmap = vmemdup_user(u64_to_user_ptr(cmd->ptr),
				      DIV_ROUND_UP(npages, BITS_PER_BYTE));
		if (IS_ERR(bitmap))
			return PTR_ERR(bitmap);
	}
	for (i = 0; i < npages; i++)
		nselected += dmirror_evict_selected(bitmap, i);
	if (!nselected) {
		ret = -EINVAL;
		goto out;
	}

	pfns = kvmalloc_array(nselected, sizeof(*pfns), GFP_KERNEL);
	if (!pfns) {
		ret = -ENOMEM;
		goto out;
	}
	/* Since the mm is for the mirrored process, get a reference first. */
	if (!mmget_not_zero(mm)) {
		ret = -EINVAL;
		goto out;
	}
	collected = dmirror_evict_collect(dmirror, start, npages, bitmap, pfns, &mapped);
	mmput(mm);
	if (collected < 0) {
		ret = collected;
		goto out;
	}
	if (!mapped) {
		ret = -EFAULT;
		goto out;
	}

	sort(pfns, collected, sizeof(*pfns), dmirror_evict_cmp_pfn, NULL);
	for (npfns = 0, i = 0; i < collected; i++)
		if (!npfns || pfns[i] != pfns[npfns - 1])
			pfns[npfns++] = pfns[i];

	mutex_lock(&mdevice->devmem_lock);
	total = dmirror_evict_layout(mdevice, pfns, npfns, NULL, 0);
	if (total) {
		src = kvcalloc(total, sizeof(*src), GFP_KERNEL);
		dst = kvcalloc(total, sizeof(*dst), GFP_KERNEL);
		if (!src || !dst) {
			mutex_unlock(&mdevice->devmem_lock);
			ret = -ENOMEM;
			goto out;
		}
		total = dmirror_evict_layout(mdevice, pfns, npfns, src, total);
		/*
		 * Takes a reference on and locks each page it can, and unmaps it; from here
		 * on those pages pin their chunk, so the lock can go.
		 */
		ret = migrate_device_pfns(src, total);
	}
	mutex_unlock(&mdevice->devmem_lock);
	if (ret || !total)
		goto out;

	dmirror_evict_alloc_and_copy(src, dst, total);
	migrate_device_pages(src, dst, total);
	for (i = 0; i < total; i++) {
		struct page *dpage = migrate_pfn_to_page(dst[i]);

		if (dpage && (src[i] & MIGRATE_PFN_MIGRATE))
			evicted += folio_nr_pages(page_folio(dpage));
	}
	migrate_device_finalize(src, dst, total);
	cmd->cpages = evicted;

out:
	kvfree(src);
	kvfree(dst);
	kvfree(pfns);
	kvfree(bitmap);
	return ret;
}
