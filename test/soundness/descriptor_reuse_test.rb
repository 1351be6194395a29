# frozen_string_literal: true

# Issue 9, item 3: descriptor reuse between queue and submit. An operation
# names its descriptor by number; if other Ruby code runs before the kernel
# has taken the operation, it can close the IO (IO#close) and open a file that
# gets the same number. The operation must then never touch the new file:
# never write "SECRET" into it, never read from it nor move its offset, never
# report its readiness.
#
# Two orderings: (1) fiber A parks in the operation and the loop fiber does the
# close-and-reopen before its next select; (2) A and B are both on the ready
# queue and run in the same select, A first (the issue's reproduction).

require_relative "support"

module SoundnessDescriptorReuse
  include Soundness::Helpers

  SECRET = "SECRET"
  FILEDATA = "FILEDATA-of-the-unrelated-file"

  def buffer_with(string)
    buffer = IO::Buffer.new(string.bytesize)
    buffer.set_string(string)
    buffer
  end

  # Closes `io` and opens `path` until the new File has io's old number (lower
  # free numbers are filled by spare opens, kept in @fillers).
  def reopen_at_same_number(io, path)
    number = io.fileno
    io.close
    @fillers ||= []
    loop do
      file = File.open(path, "r+")
      return file if file.fileno == number

      @fillers << file
      flunk "descriptor #{number} was not free after close (got #{file.fileno})" if file.fileno > number
    end
  end

  # The operation under test, on `io` (a pipe end, or a file for pread/pwrite).
  def operation(kind, selector, io, buffer)
    case kind
    when :io_write, :io_write_full then selector.io_write(Fiber.current, io, buffer, buffer.size)
    when :io_read then selector.io_read(Fiber.current, io, buffer, 1)
    when :io_wait then selector.io_wait(Fiber.current, io, IO::READABLE)
    when :io_pread then selector.io_pread(Fiber.current, io, buffer, 0, buffer.size, 0)
    when :io_pwrite then selector.io_pwrite(Fiber.current, io, buffer, 0, buffer.size, 0)
    end
  end

  def reuse_case(kind, ordering)
    require_selector_method(kind.to_s.sub("_full", "").to_sym)
    isolated(label: "#{kind}, reuse #{ordering}") do
      selector = new_selector(Fiber.current)
      dir = Dir.mktmpdir("soundness-reuse")
      victim_path = File.join(dir, "unrelated")
      File.binwrite(victim_path, %i[io_read io_pread].include?(kind) ? FILEDATA : "")
      input, output = IO.pipe
      target =
        case kind
        when :io_write, :io_write_full then output
        when :io_read, :io_wait then input
        else File.open(File.join(dir, "own"), "w+")
        end
      fill_pipe(output) if kind == :io_write_full
      buffer = %i[io_write io_write_full io_pwrite].include?(kind) ? buffer_with(SECRET) : IO::Buffer.new(64)

      outcome = nil
      victim = nil
      a = Fiber.new do
        outcome = [:returned, operation(kind, selector, target, buffer)]
      rescue StandardError => error
        outcome = [:raised, error]
      end
      b = Fiber.new { victim = reopen_at_same_number(target, victim_path) }

      if ordering == :by_the_loop
        a.transfer
        step "A issued #{kind}; the loop closes and reopens fd #{target.fileno}"
        b.transfer
      else
        selector.push(a)
        selector.push(b)
        step "A and B queued; one select runs both"
        selector.select(0)
      end
      assert victim, "B did not reopen the descriptor"
      step "fd reused by the unrelated file; driving select"
      5.times { selector.select(0.01) }
      # Drain the full pipe: a write the kernel took before the close may now finish.
      input.read_nonblock(1 << 20) rescue nil if kind == :io_write_full && !input.closed? # rubocop:disable Style/RescueModifier
      5.times { selector.select(0.01) }

      contents = File.binread(victim_path)
      position = victim.sysseek(0, IO::SEEK_CUR)
      bytes = buffer.get_string
      case kind
      when :io_write, :io_write_full, :io_pwrite
        refute contents.include?(SECRET), "#{kind} wrote into the unrelated file that reused its descriptor: file holds #{contents[0, 40].inspect}"
      when :io_read, :io_pread
        refute bytes.include?(FILEDATA[0, 8]), "#{kind} read from the unrelated file that reused its descriptor (A: #{outcome.inspect}, buffer #{bytes[0, 30].inspect})"
        assert_equal 0, position, "#{kind} moved the offset of the unrelated file that reused its descriptor"
        assert_equal FILEDATA, contents
      when :io_wait
        if outcome && outcome[0] == :returned
          refute_equal IO::READABLE, outcome[1], "io_wait reported the readiness of the unrelated file that reused its descriptor"
        end
      end
      selector.close
      true
    ensure
      FileUtils.rm_rf(dir) if dir
    end
  end

  %i[io_write io_write_full io_read io_wait io_pread io_pwrite].each do |kind|
    %i[by_the_loop by_a_fiber_in_the_same_select].each do |ordering|
      define_method("test_#{kind}_then_close_and_reuse_#{ordering}") do
        reuse_case(kind, ordering)
      end
    end
  end
end

require "tmpdir"
require "fileutils"

SelectorVariants.define("SoundnessDescriptorReuse", SoundnessDescriptorReuse, variants: SelectorVariants::PLAIN)
