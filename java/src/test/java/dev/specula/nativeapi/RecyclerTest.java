package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.*;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

class RecyclerTest {
    @Test
    void matrixSavesLoadsAndDraftsFromTheTemplate() {
        try (Context ctx = Context.cpu(); Recycler r = Recycler.create(ctx, 50, 4, Recycler.Fill.RANK)) {
            int[] m = r.save();
            assertEquals(200, m.length);
            assertArrayEquals(new int[] {0, 1, 2, 3}, Arrays.copyOfRange(m, 4 * 17, 4 * 18));
            for (int t = 0; t < 50; t++) for (int j = 0; j < 4; j++) m[t * 4 + j] = (t + j + 1) % 50;
            r.load(m);
            assertArrayEquals(m, r.save());
            // Root 10; node 1 = rank 0 of 10 -> 11; node 2 = rank 2 of 10 -> 13; node 3 = rank 1 of node 1's 11 -> 13.
            var template = new Recycler.Template(new int[] {-1, 0, 0, 1}, new int[] {0, 0, 2, 1});
            assertArrayEquals(new int[] {10, 11, 13, 13}, r.draft(template, new int[] {10})[0]);
        }
    }

    @Test
    void badInputIsRefusedWithAClearMessage() {
        try (Context ctx = Context.cpu(); Recycler r = Recycler.create(ctx, 50, 4, Recycler.Fill.ZERO)) {
            int[] bad = new int[200];
            bad[7] = 50;
            SpeculaException e = assertThrows(SpeculaException.class, () -> r.load(bad));
            assertTrue(e.getMessage().contains("50"), e.getMessage());
            assertThrows(SpeculaException.class, () -> r.load(new int[3]));
            IllegalArgumentException t = assertThrows(IllegalArgumentException.class,
                    () -> new Recycler.Template(new int[] {-1, 1}, new int[] {0, 0}));
            assertTrue(t.getMessage().contains("not a tree"), t.getMessage());
            var wide = new Recycler.Template(new int[] {-1, 0}, new int[] {0, 6});
            assertThrows(IllegalArgumentException.class, () -> r.draft(wide, new int[] {1}));
            assertEquals(81, Recycler.Template.defaultTemplate().size());
        }
        Context ctx = Context.cpu();
        Recycler r = Recycler.create(ctx, 50, 4, Recycler.Fill.ZERO);
        ctx.close();
        assertFalse(r.isOpen());
        assertThrows(IllegalStateException.class, r::save);
    }
}
