classdef PackedJson < scistack.BaseVariable
end
