# frozen_string_literal: true

class IO
  module Event
    # A binary min-heap over any objects that respond to `<` (and `<=`-style
    # comparison through `<`). The smallest element is at index 0; the children
    # of index i are at 2i+1 and 2i+2.
    class PriorityHeap
      def initialize
        @contents = []
      end

      # The smallest element, or nil when empty. Does not remove it.
      def peek
        @contents[0]
      end

      def size
        @contents.size
      end

      def empty?
        @contents.empty?
      end

      # Removes and returns the smallest element, or nil when empty.
      def pop
        last = @contents.pop
        return last if @contents.empty?

        smallest = @contents[0]
        @contents[0] = last
        sift_down(0)
        smallest
      end

      # Adds an element. Returns self.
      def push(element)
        @contents.push(element)
        sift_up(@contents.size - 1)
        self
      end

      # Adds many elements at once (one O(n) rebuild). Returns self.
      def concat(elements)
        return self if elements.empty?

        heapify { |contents| contents.concat(elements) }
      end

      # Removes every element.
      def clear!
        @contents = []
      end

      # Removes one element, found by identity or ==. O(n). Returns it, or nil.
      def delete(element)
        index = @contents.index(element)
        return nil unless index

        removed = @contents[index]
        last = @contents.pop
        unless index == @contents.size
          @contents[index] = last
          if index.positive? && last < @contents[(index - 1) / 2]
            sift_up(index)
          else
            sift_down(index)
          end
        end
        removed
      end

      # Removes every element for which the block is true. Returns how many.
      def delete_if
        return enum_for(:delete_if) unless block_given?

        before = @contents.size
        heapify { |contents| contents.reject! { |element| yield(element) } }
        before - @contents.size
      end

      # Whether the heap invariant holds: no element is smaller than its parent.
      def valid?
        (1...@contents.size).none? { |index| @contents[index] < @contents[(index - 1) / 2] }
      end

      # Restores the heap order over the whole array in one O(n) pass. With a
      # block, first yields the underlying array for a batch of changes (add,
      # remove, reorder elements in place), so many changes cost one pass
      # instead of O(log n) each. The block must change the array in place
      # and not keep it. Returns self.
      def heapify
        yield @contents if block_given?
        ((@contents.size / 2) - 1).downto(0) { |index| sift_down(index) }
        self
      end

      private

      def sift_up(index)
        element = @contents[index]
        while index.positive?
          parent = (index - 1) / 2
          break unless element < @contents[parent]

          @contents[index] = @contents[parent]
          index = parent
        end
        @contents[index] = element
      end

      def sift_down(index)
        element = @contents[index]
        size = @contents.size
        loop do
          child = (2 * index) + 1
          break if child >= size

          right = child + 1
          child = right if right < size && @contents[right] < @contents[child]
          break unless @contents[child] < element

          @contents[index] = @contents[child]
          index = child
        end
        @contents[index] = element
      end
    end
  end
end
