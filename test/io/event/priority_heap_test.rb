# frozen_string_literal: true

require_relative "../../test_helper"

class PriorityHeapTest < Minitest::Test
  def setup
    @heap = IO::Event::PriorityHeap.new
  end

  def contents
    @heap.instance_variable_get(:@contents)
  end

  def drain
    result = []
    while (element = @heap.pop)
      result << element
    end
    result
  end

  def test_empty_heap
    assert_predicate @heap, :empty?
    assert_equal 0, @heap.size
    assert_nil @heap.peek
    assert_nil @heap.pop
    assert_predicate @heap, :valid?
  end

  def test_push_returns_self_and_peek_does_not_remove
    assert_same @heap, @heap.push(3)
    @heap.push(1).push(2)
    assert_equal 1, @heap.peek
    assert_equal 3, @heap.size
    refute_predicate @heap, :empty?
  end

  def test_pops_in_ascending_order
    [5, 3, 9, 1, 7, 2, 8].each { |value| @heap.push(value) }
    assert_equal [1, 2, 3, 5, 7, 8, 9], drain
    assert_predicate @heap, :empty?
  end

  def test_keeps_duplicates
    [2, 1, 2, 1, 2].each { |value| @heap.push(value) }
    assert_equal [1, 1, 2, 2, 2], drain
  end

  def test_single_element
    @heap.push(:only_one) # Symbols compare with <
    assert_equal :only_one, @heap.pop
    assert_nil @heap.pop
  end

  def test_clear
    10.times { |value| @heap.push(value) }
    @heap.clear!
    assert_predicate @heap, :empty?
    assert_nil @heap.pop
    @heap.push(4)
    assert_equal 4, @heap.pop
  end

  def test_invariant_holds_through_random_pushes_and_pops
    random = Random.new(1234)
    reference = []
    (GC.stress ? 40 : 5000).times do
      if reference.empty? || random.rand < 0.6
        value = random.rand(1000)
        @heap.push(value)
        reference << value
      else
        smallest = reference.min
        reference.delete_at(reference.index(smallest))
        assert_equal smallest, @heap.pop
      end
      assert_equal reference.size, @heap.size
    end
    assert_predicate @heap, :valid?
    assert_equal reference.sort, drain
  end

  def test_valid_detects_a_broken_heap
    [1, 2, 3, 4].each { |value| @heap.push(value) }
    assert_predicate @heap, :valid?
    contents[3] = 0 # a child smaller than its parent
    refute_predicate @heap, :valid?
  end

  def test_concat_builds_a_valid_heap
    values = (1..500).to_a.shuffle(random: Random.new(7))
    assert_same @heap, @heap.concat(values)
    assert_predicate @heap, :valid?
    assert_equal 500, @heap.size
    assert_equal (1..500).to_a, drain
    assert_same @heap, @heap.concat([])
  end

  def test_delete
    values = (1..50).to_a.shuffle(random: Random.new(3))
    values.each { |value| @heap.push(value) }
    assert_equal 17, @heap.delete(17)
    assert_equal 1, @heap.delete(1)
    assert_equal 50, @heap.delete(50)
    assert_nil @heap.delete(17)
    assert_predicate @heap, :valid?
    assert_equal (2..49).to_a - [17], drain
  end

  def test_delete_if
    (1..20).each { |value| @heap.push(value) }
    assert_equal 10, @heap.delete_if(&:even?)
    assert_predicate @heap, :valid?
    assert_equal (1..20).select(&:odd?), drain
    assert_kind_of Enumerator, @heap.delete_if
  end

  def test_heapify_is_public_and_restores_order_after_a_batch_of_changes
    (1..30).each { |value| @heap.push(value) }
    result = @heap.heapify do |contents|
      contents.reject!(&:even?)
      contents.concat([0, -5, 100])
      contents.reverse!
    end
    assert_same @heap, result
    assert_predicate @heap, :valid?
    assert_equal [-5, 0] + (1..30).select(&:odd?) + [100], drain
  end

  def test_heapify_without_a_block_repairs_a_broken_heap
    (1..10).each { |value| @heap.push(value) }
    @heap.instance_variable_get(:@contents).reverse!
    refute_predicate @heap, :valid?
    assert_same @heap, @heap.heapify
    assert_predicate @heap, :valid?
    assert_equal (1..10).to_a, drain
  end

  # Elements only need #<; equal elements may come out in any order.
  class Item
    attr_reader :key, :name

    def initialize(key, name)
      @key = key
      @name = name
    end

    def <(other)
      @key < other.key
    end
  end

  def test_works_with_objects_that_define_less_than
    items = [Item.new(3, :c), Item.new(1, :a), Item.new(2, :b)]
    items.each { |item| @heap.push(item) }
    assert_equal %i[a b c], drain.map(&:name)
  end
end
