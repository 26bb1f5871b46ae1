classdef PackedZ < scistack.BaseVariable
end
