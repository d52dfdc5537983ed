# frozen_string_literal: true

require "json"

module Honker
  # JSON encoding of payloads, refusing what another language could not read back exactly.
  module Payload
    MAX_SAFE_INT = 2**53

    module_function

    # JSON text for value; integers beyond 2^53 and NaN/Infinity are refused with
    # payload.not_json before anything is written.
    def encode(value)
      check(value)
      JSON.generate(value)
    rescue JSON::GeneratorError, JSON::NestingError => e
      raise PayloadError.new("payload.not_json", "payload cannot be encoded as JSON: #{e.message}")
    end

    def check(value)
      case value
      when Integer
        if value.abs > MAX_SAFE_INT
          raise PayloadError.new("payload.not_json", "integer #{value} is beyond 2^53, which not every reader can hold exactly")
        end
      when Float
        raise PayloadError.new("payload.not_json", "#{value} is not a JSON number") unless value.finite?
      when Hash
        value.each { |k, v| check(k) unless k.is_a?(String) || k.is_a?(Symbol); check(v) }
      when Array
        value.each { |v| check(v) }
      when String, Symbol, true, false, nil
        nil
      else
        raise PayloadError.new("payload.not_json", "#{value.class} is not a JSON value (use Hash, Array, String, numbers, true, false, nil)")
      end
    end

    def decode(text)
      text.nil? ? nil : JSON.parse(text)
    end
  end
end
